// The page in headless Chromium against the real `gemma-web serve` and the real model: choosing a model reads only
// its GGUF header (Range requests) and shows its size and configuration; loading it gives a working text completion
// (the local Gemma 3 270M is a base model) whose greedy tokens are the native engine's; a browser without WebGPU and
// a file that is not GGUF get clear messages.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import {
  MODEL, MODEL_BYTES, launchBrowser, nativeGenerate, newPage as openPage, onCleanup, outDir, runCleanup, serverBin,
  startServer,
} from "./harness.mjs";

let context;

before(async () => {
  context = await launchBrowser({ viewport: { width: 1100, height: 1400 } });
});
// Runs even when a test or `before` failed, so no server outlives the tests.
after(runCleanup);

const newPage = () => openPage(context);

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
  await page.locator('[data-key="vocab"]').waitFor({ state: "attached", timeout: 120_000 });

  const error = page.locator("#error");
  assert.equal(await error.isVisible(), false, `error shown: ${await error.textContent()}`);
  // The size is shown before anything is downloaded, and the load button says it.
  assert.match(await page.locator("#fetch-info").textContent(), /253\.1 MB/);
  assert.equal(await page.locator("#load").textContent(), "Load model (253.1 MB)");
  await page.locator("#model-details > summary").click();
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

test("without WebGPU the page says the model runs on the CPU, shows the header and can load it", async () => {
  const url = await startServer("models");
  const { page, errors } = await newPage();
  await page.addInitScript(() => {
    delete Navigator.prototype.gpu;
  });
  await page.goto(url);
  await page.locator('[data-key="layers"]').waitFor({ state: "attached", timeout: 120_000 });
  assert.match(await page.locator("#webgpu").textContent(), /does not offer WebGPU, so models run on the CPU/);
  await page.waitForFunction(() => !document.getElementById("load").disabled, null, { timeout: 60_000 });
  // Insisting on the GPU leaves nothing to load the model onto.
  await page.selectOption("#backend-select", "webgpu");
  assert.equal(await page.locator("#load").isDisabled(), true, "no GPU to load the model onto");
  assert.equal(await fact(page, "layers"), "18");
  assert.deepEqual(errors, []);
});

test("a .gguf dropped on the page is read from the disk, not the network", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "gemma-web-drop-"));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "tiny-gemma2.gguf");
  await promisify(execFile)(serverBin, ["random-model", "--arch", "gemma2", "--out", file]);
  const bytes = await readFile(file);
  const url = await startServer("models");
  const { page, errors } = await newPage();
  await page.goto(url);
  await page.locator('[data-key="layers"]').waitFor({ state: "attached", timeout: 120_000 });
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.evaluate(({ b64, name }) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([data], name));
    document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, { b64: bytes.toString("base64"), name: path.basename(file) });
  await page.waitForFunction(() => document.querySelector('[data-key="architecture"]')?.textContent === "gemma2");
  assert.equal(await fact(page, "layers"), "4");
  assert.equal(await page.locator("#model-select").inputValue(), "file");
  assert.deepEqual(requests.filter((u) => u.includes("/models/")), [], "nothing fetched for a dropped file");
  assert.deepEqual(errors, []);
});

test("a file that is not GGUF ends in a BadModel error on the page", async () => {
  const models = await mkdtemp(path.join(tmpdir(), "gemma-web-models-"));
  onCleanup(() => rm(models, { recursive: true, force: true }));
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

test("the page loads Gemma 3 270M, continues a text like the native engine and can be stopped", async () => {
  const prompt = "The capital of France is";
  const tokens = 4;
  const native = await nativeGenerate(["--prompt", prompt, "--max-tokens", String(tokens), "--context", "256", "--backend", "cpu"]);
  const url = await startServer("models");
  const { page, errors } = await newPage();
  await page.goto(url);
  const load = page.locator("#load");
  await page.waitForFunction(() => document.getElementById("load").textContent.includes("MB"), null, { timeout: 120_000 });
  // Greedy and short.
  await page.locator("#settings > summary").click();
  await page.fill("#max-tokens", String(tokens));
  await page.fill("#temperature", "0");
  let t = Date.now();
  await load.click();
  await page.locator("#text-section").waitFor({ timeout: 300_000 });
  const loadSeconds = (Date.now() - t) / 1000;
  assert.match(await page.locator("#load-info").textContent(), /^Loaded in /);
  // SwiftShader is a software adapter: "auto" runs the model on the CPU and says why.
  assert.match(await page.locator("#engine-info").textContent(),
    /^Running on the CPU, \d+ threads? \(WebGPU offers only a software adapter/);
  assert.equal(await page.locator("#engine-info").getAttribute("data-backend"), "cpu");
  assert.match(await page.locator("#webgpu").textContent(), /only a software adapter/);
  // The weights went through the browser's storage and are listed there.
  await page.locator("#stored li", { hasText: `${MODEL} (253.1 MB)` }).waitFor({ timeout: 30_000 });

  t = Date.now();
  await page.locator("button.example", { hasText: prompt }).click();
  await page.locator('#stats[data-finish="length"]').waitFor({ timeout: 600_000 });
  const genSeconds = (Date.now() - t) / 1000;
  assert.equal(await page.locator("#completion .prompt").textContent(), prompt);
  assert.equal(await page.locator("#completion .generated").textContent(), native.text);
  assert.match(await page.locator("#stats").textContent(), new RegExp(`Reply: ${tokens} tokens at [0-9.]+ tokens/s`));
  assert.equal(await page.locator("#error").isVisible(), false, await page.locator("#error").textContent());
  await mkdir(outDir, { recursive: true });
  await page.screenshot({ path: path.join(outDir, "page-completion.png"), fullPage: true });
  console.log(`page: load ${loadSeconds.toFixed(1)} s, ${tokens} tokens in ${genSeconds.toFixed(1)} s: ` +
    `${JSON.stringify(native.text)}; screenshot tests/out/page-completion.png`);

  // Stop: a long request ends early. How many tokens come before the click lands depends on the machine's speed
  // (the engine-level interrupt test pins "after the current token"); here it must end far below the limit.
  await page.fill("#max-tokens", "128");
  await page.fill("#text-input", "Once upon a time");
  await page.locator("#continue").click();
  await page.waitForFunction(() => document.querySelector("#completion .generated").textContent.length > 0, null,
    { timeout: 600_000 });
  await page.locator("#text-section .stop").click();
  await page.locator('#stats[data-finish="abort"]').waitFor({ timeout: 600_000 });
  const stopped = Number((await page.locator("#stats").textContent()).match(/Reply: (\d+) tokens/)?.[1]);
  assert.ok(stopped >= 1 && stopped < 64, `stopped after ${stopped} of 128 tokens`);

  // The chat panel (the base 270M only echoes a chat, but the page's chat works the same for any model): a second
  // message reuses the first turn from the KV cache.
  await page.fill("#max-tokens", "2");
  await page.selectOption("#mode-select", "chat");
  await page.locator("#chat-section").waitFor();
  for (const [i, text] of ["Hi", "Bye"].entries()) {
    await page.fill("#chat-input", text);
    await page.locator("#send").click();
    await page.locator("#messages li.assistant").nth(i).waitFor();
    await page.waitForFunction((n) => !document.getElementById("send").disabled &&
      document.querySelectorAll("#messages li.assistant").length === n, i + 1, { timeout: 600_000 });
  }
  assert.equal(await page.locator("#error").isVisible(), false, await page.locator("#error").textContent());
  assert.deepEqual(await page.locator("#messages li.user .text").allTextContents(), ["Hi", "Bye"]);
  assert.match(await page.locator("#stats").textContent(), /earlier tokens reused from memory/);
  await page.screenshot({ path: path.join(outDir, "page-chat.png"), fullPage: true });
  assert.deepEqual(errors, []);
});
