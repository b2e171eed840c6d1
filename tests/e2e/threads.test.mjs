// The shared-memory wasm package (www/pkg-threads) in headless Chromium against `gemma-web serve`: www/wasm-loader.js
// starts it with a pool of 2 threads on nested workers when the page is cross-origin isolated, and the single-threaded
// package, saying why, when it is not. On the running pool the CPU engine's row-split matrix products give candle's
// unsplit results bit for bit.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, newPage, runCleanup, startServer } from "./harness.mjs";

let url;
let context;

after(runCleanup);

before(async () => {
  url = await startServer("models");
  context = await launchBrowser();
});

/** Runs `body` (module source, `loadWasm` in scope, posting one message) in a module worker of the page. */
function inWorker(page, body) {
  return page.evaluate((src) => {
    const blob = new Blob([src], { type: "text/javascript" });
    const worker = new Worker(URL.createObjectURL(blob), { type: "module" });
    return new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(e.message));
    });
  }, `import { loadWasm } from "${url}wasm-loader.js";\n${body}`);
}

test("cross-origin isolated: 2 pool threads, and split matmuls equal the unsplit kernel bit for bit", async () => {
  const { page, errors } = await newPage(context);
  await page.goto(`${url}gemma-web.js`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, "the dev server isolates the page");
  const got = await inWorker(page, `
    const w = await loadWasm({ threads: 2 });
    postMessage({ package: w.package, threads: w.threads, fallback: w.fallback,
      mismatches: w.package === "pkg-threads" ? w.module.splitMatmulMismatches() : null });`);
  console.log(`threaded package: ${JSON.stringify(got)}`);
  assert.deepEqual(got, { package: "pkg-threads", threads: 2, fallback: null, mismatches: 0 });
  assert.deepEqual(errors, []);
  await page.close();
});

/** The same server without the isolation headers (as a host that does not send them). */
function withoutIsolation(page) {
  return page.route("**/*", async (route) => {
    const res = await route.fetch();
    const headers = { ...res.headers() };
    delete headers["cross-origin-opener-policy"];
    delete headers["cross-origin-embedder-policy"];
    await route.fulfill({ response: res, headers });
  });
}

test("not cross-origin isolated: the single-threaded package, and the result says why", async () => {
  const { page, errors } = await newPage(context);
  await withoutIsolation(page);
  await page.goto(`${url}gemma-web.js`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
  const got = await inWorker(page, `
    const w = await loadWasm({ threads: 2 });
    postMessage({ package: w.package, threads: w.threads, fallback: w.fallback,
      engine: typeof w.module.WebEngine });`);
  console.log(`without isolation: ${JSON.stringify(got)}`);
  assert.equal(got.package, "pkg");
  assert.equal(got.threads, 1);
  assert.equal(got.engine, "function");
  assert.match(got.fallback, /not cross-origin isolated/);
  assert.deepEqual(errors, []);
  await page.close();
});

test("the CPU engine on 1 and on 2 threads: the same greedy tokens, and info and usage say the threads", { timeout: 300_000 }, async () => {
  const { page, errors } = await newPage(context);
  await page.goto(`${url}gemma-web.js`);
  const runs = await page.evaluate(async () => {
    const { createEngine } = await import("/gemma-web.js");
    const out = [];
    for (const threads of [1, 2]) {
      const engine = await createEngine({ model: "gemma-3-270m", contextLength: 128, backend: "cpu", threads });
      const got = await engine.completions.create({
        prompt: "The quick brown fox jumps over the lazy dog, and then it",
        max_tokens: 4,
        temperature: 0,
      });
      out.push({ threads,
        info: { backend: engine.info.backend, threads: engine.info.threads, threadsReason: engine.info.threadsReason },
        usage: got.usage, prompt: got.gemma.prompt_ids, ids: got.gemma.generated_ids });
      await engine.unload();
    }
    return out;
  });
  for (const r of runs) {
    console.log(`${r.threads} thread(s): ${JSON.stringify(r.ids)}, prefill ${r.usage.prefill_tok_s.toFixed(1)} tok/s, ` +
      `decode ${r.usage.decode_tok_s.toFixed(1)} tok/s`);
    assert.deepEqual(r.info, { backend: "cpu", threads: r.threads, threadsReason: null });
    assert.equal(r.usage.backend, "cpu");
    assert.equal(r.usage.threads, r.threads);
    assert.equal(r.ids.length, 4);
  }
  assert.ok(runs[0].prompt.length >= 8 && runs[0].prompt.length <= 16, `a short prompt: ${runs[0].prompt.length} tokens`);
  assert.deepEqual(runs[1].prompt, runs[0].prompt);
  assert.deepEqual(runs[1].ids, runs[0].ids, "greedy tokens on 2 threads and on 1");
  assert.deepEqual(errors, []);
  await page.close();
});

// After the test above, the model is in this origin's storage: the page below loads it from there.
test("not cross-origin isolated: a CPU engine asked for 2 threads runs on 1, and its info says why", { timeout: 120_000 }, async () => {
  const { page, errors } = await newPage(context);
  await withoutIsolation(page);
  await page.goto(`${url}gemma-web.js`);
  const got = await page.evaluate(async () => {
    const { createEngine } = await import("/gemma-web.js");
    const engine = await createEngine({ model: "gemma-3-270m", contextLength: 64, backend: "cpu", threads: 2 });
    const { threads, threadsReason, backend } = engine.info;
    await engine.unload();
    return { threads, threadsReason, backend };
  });
  console.log(`without isolation, 2 threads asked for: ${JSON.stringify(got)}`);
  assert.equal(got.backend, "cpu");
  assert.equal(got.threads, 1);
  assert.match(got.threadsReason, /not cross-origin isolated/);
  assert.deepEqual(errors, []);
  await page.close();
});
