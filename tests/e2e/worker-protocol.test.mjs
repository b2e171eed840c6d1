// The engine worker's protocol (www/worker.js) spoken directly, in headless Chromium against `gemma-web serve` and the
// real Gemma 3 270M: an interrupt names its generate call, so one that arrives late cannot stop the next call; an
// interrupt stops a long prefill between its blocks; tokenize is answered while a generation runs. The model loads
// with 4-token prefill blocks so that a short prompt has several; SwiftShader takes seconds a token, so few tokens.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, MODEL, newPage, runCleanup, startServer } from "./harness.mjs";

let page;
let errors;

after(runCleanup);

before(async () => {
  const url = await startServer("models");
  const context = await launchBrowser();
  ({ page, errors } = await newPage(context));
  await page.goto(`${url}gemma-web.js`);
  const info = await page.evaluate(async (model) => {
    const worker = new Worker("/worker.js", { type: "module" });
    const calls = new Map();
    let answered = 0;
    worker.onmessage = ({ data: msg }) => {
      const call = calls.get(msg.id);
      if (!call) return;
      if (msg.type === "done" || msg.type === "error") {
        calls.delete(msg.id);
        // `order`: the how-manieth answer this was, to tell which call the worker answered first.
        call.resolve({ ...msg, order: ++answered });
      }
    };
    window.worker = {
      /** Posts a call; resolves with its answer (done or error). */
      call(msg) {
        return new Promise((resolve) => {
          calls.set(msg.id, { resolve });
          worker.postMessage(msg);
        });
      },
      /** Posts a message that is not answered (interrupt). */
      post(msg) {
        worker.postMessage(msg);
      },
    };
    const loaded = await window.worker.call({
      type: "load", id: 1, source: { kind: "url", url: `/models/${model}`, store: false },
      options: { contextLength: 64, prefillChunk: 4 },
    });
    return loaded.value ?? loaded.error;
  }, MODEL);
  assert.equal(info.header?.architecture, "gemma3", JSON.stringify(info));
});

test("a late interrupt of a finished call does not stop the next one; tokenize answers during a generation", async () => {
  const got = await page.evaluate(async () => {
    const w = window.worker;
    const request = { prompt: "Hello", temperature: 0 };
    const first = await w.call({ type: "generate", id: 2, request: { ...request, maxTokens: 1 } });
    // Call 3 starts, then an interrupt meant for call 2 arrives: the engine is busy with 3 when it comes.
    const second = w.call({ type: "generate", id: 3, request: { ...request, maxTokens: 2 } });
    w.post({ type: "interrupt", id: 2 });
    const tokens = w.call({ type: "tokenize", id: 4, text: request.prompt, addBos: true });
    return { first, second: await second, tokens: await tokens };
  });
  assert.equal(got.first.type, "done", JSON.stringify(got.first));
  assert.equal(got.second.type, "done", JSON.stringify(got.second));
  assert.equal(got.second.value.finishReason, "length", "call 3 ran to its max_tokens");
  assert.equal(got.second.value.generatedIds.length, 2);
  assert.deepEqual(got.second.value.generatedIds.slice(0, 1), got.first.value.generatedIds, "greedy: the same start");
  assert.equal(got.tokens.type, "done", JSON.stringify(got.tokens));
  assert.deepEqual(got.tokens.value, got.second.value.promptIds);
  assert.ok(got.tokens.order < got.second.order, "tokenize was answered while the generation ran");
  assert.deepEqual(errors, []);
});

test("an interrupt stops a long prefill between blocks, before any token; the engine goes on", async () => {
  const got = await page.evaluate(async () => {
    const w = window.worker;
    // About 12 tokens: three 4-token blocks.
    const request = { prompt: "Once upon a time, in a land far away, there lived", temperature: 0, maxTokens: 4 };
    const t = performance.now();
    const stopped = w.call({ type: "generate", id: 5, request });
    w.post({ type: "interrupt", id: 5 });
    const first = await stopped;
    const seconds = (performance.now() - t) / 1000;
    const again = await w.call({ type: "generate", id: 6, request: { prompt: "Hi", temperature: 0, maxTokens: 1 } });
    return { first, seconds, again };
  });
  assert.equal(got.first.type, "done", JSON.stringify(got.first));
  const r = got.first.value;
  console.log(`interrupted prefill: ${got.seconds.toFixed(1)} s, ${r.promptIds.length} prompt tokens, ` +
    `${r.prefillSeconds.toFixed(1)} s of prefill`);
  assert.ok(r.promptIds.length > 8, `${r.promptIds.length} prompt tokens: more than two blocks`);
  assert.equal(r.finishReason, "abort");
  assert.deepEqual(r.generatedIds, [], "stopped in the prefill, before the first token");
  assert.equal(got.again.type, "done", JSON.stringify(got.again));
  assert.equal(got.again.value.finishReason, "length");
  assert.equal(got.again.value.generatedIds.length, 1);
  assert.deepEqual(errors, []);
});

test("the page's header probe grows its reads up to the 256 MiB cap, then says BadModel", async () => {
  const got = await page.evaluate(async () => {
    const wasm = await import("/pkg/gemma_web.js");
    await wasm.default();
    // GGUF v3, no tensors, one metadata entry: an array of 8 M strings of 1 MiB (each within the parser's limits),
    // whose first `bytes` bytes are given: 8 TiB of header that only the read cap stops.
    const STRING = 2 ** 20;
    const prefix = (bytes) => {
      const out = new Uint8Array(bytes).fill(97);
      const b = new DataView(out.buffer);
      const key = new TextEncoder().encode("tokenizer.ggml.tokens");
      let at = 0;
      const u32 = (v) => { b.setUint32(at, v, true); at += 4; };
      const u64 = (v) => { b.setBigUint64(at, BigInt(v), true); at += 8; };
      u32(0x46554747); u32(3); u64(0); u64(1); u64(key.length);
      out.set(key, at);
      at += key.length;
      u32(9); u32(8); u64(8_000_000);
      for (; at + 8 <= bytes; at += STRING) u64(STRING);
      return out;
    };
    const probe = (bytes) => {
      try {
        return wasm.readGgufHeader(prefix(bytes), 2 ** 40);
      } catch (e) {
        return { code: e.code, message: e.message };
      }
    };
    return { first: probe(2 ** 20), nearCap: probe(200 * 2 ** 20), atCap: probe(256 * 2 ** 20) };
  });
  assert.equal(got.first.needMore, 2 ** 21, `doubles: ${JSON.stringify(got.first)}`);
  assert.equal(got.nearCap.needMore, 256 * 2 ** 20, `not past the cap: ${JSON.stringify(got.nearCap)}`);
  assert.equal(got.atCap.code, "BadModel", JSON.stringify(got.atCap));
  assert.match(got.atCap.message, /256 MiB/);
  assert.deepEqual(errors, []);
});
