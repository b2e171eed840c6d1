// The page in headless Chromium against the real `gemma-web serve` and the real model: it must show the
// Gemma 3 270M configuration read from the GGUF header, fetched with Range requests only.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { cleanup, launchBrowser, MODEL, MODEL_BYTES, outDir, runCleanup, startServer } from "./harness.mjs";

let context;

before(async () => {
  context = await launchBrowser({ viewport: { width: 1100, height: 1400 } });
});

// Runs even when a test or `before` failed, so no server outlives the tests.
after(runCleanup);

async function newPage() {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, errors };
}

const fact = (page, key) => page.locator(`[data-key="${key}"]`).textContent();

test("the page reads the model's header with Range requests and shows its configuration", async () => {
  const url = await startServer("models");
  const { page, errors } = await newPage();
  const modelResponses = [];
  page.on("response", (res) => {
    if (!res.url().endsWith(`/models/${MODEL}`)) return;
    modelResponses.push(
      res.request().allHeaders().then((headers) => ({
        status: res.status(),
        range: headers.range,
        length: Number(res.headers()["content-length"]),
        contentRange: res.headers()["content-range"],
      })),
    );
  });

  await page.goto(url);
  await page.locator('[data-key="vocab"]').waitFor({ timeout: 120_000 });

  const error = page.locator("#error");
  assert.equal(await error.isVisible(), false, `error shown: ${await error.textContent()}`);
  assert.equal(await fact(page, "architecture"), "gemma3");
  assert.equal(await fact(page, "layers"), "18");
  assert.equal(await fact(page, "d_model"), "640");
  assert.equal(await fact(page, "heads"), "4");
  assert.equal(await fact(page, "kv_heads"), "1");
  assert.equal(await fact(page, "head_dim"), "256");
  assert.match(await fact(page, "window"), /^512 tokens \(layers 5, 11, 17 global/);
  assert.equal(await fact(page, "vocab"), "262,144");

  // The token embedding is Q8_0 [640 x 262144] in this file (GEMMA.md).
  const q8 = page.locator('details[data-type="Q8_0"]');
  await q8.locator("summary").click();
  assert.match(await q8.locator("tr", { hasText: "token_embd.weight" }).textContent(), /640 × 262144/);

  // Only the header crossed the network, each piece as a Range request answered with 206.
  const modelRequests = await Promise.all(modelResponses);
  assert.ok(modelRequests.length >= 1, "the model was requested");
  let fetched = 0;
  for (const r of modelRequests) {
    assert.match(r.range ?? "", /^bytes=\d+-\d+$/, "every model request carries a Range header");
    assert.equal(r.status, 206);
    assert.match(r.contentRange, new RegExp(`/${MODEL_BYTES}$`));
    fetched += r.length;
  }
  const counted = await page.locator("#fetch-info").getAttribute("data-bytes-read");
  assert.equal(Number(counted), fetched, "the page counted the bytes the network carried");
  assert.ok(fetched < MODEL_BYTES / 10, `fetched ${fetched} bytes of ${MODEL_BYTES}`);
  assert.deepEqual(errors, []);

  await mkdir(outDir, { recursive: true });
  await page.screenshot({ path: path.join(outDir, "page.png"), fullPage: true });
  console.log(`header: ${modelRequests.length} Range requests, ${fetched} bytes; screenshot tests/out/page.png`);
});

test("without WebGPU the page says so and still shows the header", async () => {
  const url = await startServer("models");
  const { page, errors } = await newPage();
  await page.addInitScript(() => {
    delete Navigator.prototype.gpu;
  });
  await page.goto(url);
  await page.locator('[data-key="layers"]').waitFor({ timeout: 120_000 });
  assert.match(await page.locator("#webgpu").textContent(), /does not offer WebGPU/);
  assert.equal(await fact(page, "layers"), "18");
  assert.deepEqual(errors, []);
});

test("a file that is not GGUF ends in a BadModel error on the page", async () => {
  const models = await mkdtemp(path.join(tmpdir(), "gemma-web-models-"));
  cleanup.push(() => rm(models, { recursive: true, force: true }));
  await writeFile(path.join(models, "not-a-model.gguf"), "<html>this is not a GGUF file</html>\n".repeat(100));
  const url = await startServer(models);
  const { page, errors } = await newPage();
  await page.goto(url);
  const error = page.locator("#error");
  await error.waitFor({ state: "visible", timeout: 60_000 });
  assert.match(await error.textContent(), /^BadModel: .*magic/i);
  assert.equal(await page.locator("#config-section").isVisible(), false);
  assert.deepEqual(errors, []);
  await page.screenshot({ path: path.join(outDir, "page-bad-model.png") });
});
