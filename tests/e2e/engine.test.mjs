// The engine in headless Chromium (www/gemma-web.js -> worker -> wasm) against the real `gemma-web serve` and the real
// Gemma 3 270M: greedy tokens identical to the native engine's (an independent run of `gemma-web generate --json` on
// lavapipe), chat turns reusing the KV cache, interrupt, a local File. Chromium's WebGPU here is SwiftShader, a
// software adapter, so "auto" runs the CPU engine, and most tests use that engine; a second engine, on WebGPU
// (SwiftShader: seconds per token, so token counts are tiny), checks the WGSL forward pass in the browser and the
// recovery from a lost GPU device.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, MODEL_BYTES, newPage, nativeGenerate, runCleanup, sentBytes, startLoggedServer } from "./harness.mjs";

let page;
let errors;
/** The server's log of model requests: what crossed the network. */
let server;
const PROMPT = "The capital of France is";
const TOKENS = 4;

after(runCleanup);

before(async () => {
  server = await startLoggedServer("models");
  const { url } = server;
  const context = await launchBrowser();
  ({ page, errors } = await newPage(context));
  // Any page of the server's origin will do; the module is imported into it.
  await page.goto(`${url}gemma-web.js`);
  const t = Date.now();
  const loaded = await page.evaluate(async () => {
    const { createEngine } = await import("/gemma-web.js");
    const progress = [];
    window.engine = await createEngine({
      model: "gemma-3-270m",
      contextLength: 256,
      onProgress: (p) => progress.push(p),
    });
    return { progress, info: window.engine.info, backend: window.engine.backend };
  });
  const last = loaded.progress.at(-1);
  assert.ok(loaded.progress.length > 10, "progress is reported slice by slice");
  assert.equal(last.loaded, last.total);
  assert.ok(last.fetched >= last.total, "every tensor byte crossed the network");
  assert.equal(loaded.info.header.architecture, "gemma3");
  assert.equal(loaded.info.contextLength, 256);
  // The automatic choice, said out loud: SwiftShader is a software adapter, so the model runs on the CPU.
  assert.equal(loaded.backend, "cpu");
  assert.equal(loaded.info.capabilities, null);
  assert.match(loaded.info.backendReason, /software adapter/);
  assert.ok(Number.isInteger(loaded.info.threads) && loaded.info.threads >= 1, `threads ${loaded.info.threads}`);
  console.log(`load: ${((Date.now() - t) / 1000).toFixed(1)} s on the CPU, ${loaded.info.threads} thread(s) ` +
    `(${loaded.info.backendReason})`);
  // The CPU engine holds the weights in wasm memory as they are in the file (Q5_0 widened to Q8_0): the model's
  // bytes plus at most 64 MiB for everything else of the load (KV cache, activations, slices in flight).
  const mem = loaded.info.wasmMemory;
  console.log(`wasm memory (CPU): ${mib(mem.atStart)} MiB at the start, ${mib(mem.afterWeights)} MiB after the ` +
    `weights (${mib(loaded.info.weightBytes)} MiB of weights), ${mib(mem.afterTokenizer)} MiB after the tokenizer`);
  assert.ok(mem.afterWeights - mem.atStart <= MODEL_BYTES + 64 * 2 ** 20,
    `the CPU load grew wasm memory by ${mib(mem.afterWeights - mem.atStart)} MiB`);
});

const mib = (n) => (n / 2 ** 20).toFixed(1);

/** The same model on WebGPU (SwiftShader), loaded on first use, for the tests of the GPU path. */
async function gpuEngine() {
  const t = Date.now();
  const loaded = await page.evaluate(async () => {
    if (window.gpuEngine) return null;
    const { createEngine } = await import("/gemma-web.js");
    window.gpuEngine = await createEngine({ model: "gemma-3-270m", contextLength: 256, backend: "webgpu" });
    return { info: window.gpuEngine.info, backend: window.gpuEngine.backend };
  });
  if (!loaded) return;
  assert.equal(loaded.backend, "webgpu");
  assert.match(loaded.info.backendReason, /WebGPU was asked for/);
  assert.match(loaded.info.capabilities.tier, /^(baseline|f16|subgroups|f16\+subgroups)$/);
  console.log(`GPU load: ${((Date.now() - t) / 1000).toFixed(1)} s, tier ${loaded.info.capabilities.tier}, ` +
    `adapter ${JSON.stringify(loaded.info.capabilities.adapterName)}`);
  // The GPU loader streams tensors in bounded slices: wasm memory must not grow with the model (253 MB here).
  const mem = loaded.info.wasmMemory;
  console.log(`wasm memory (GPU): ${mib(mem.atStart)} MiB at the start, ${mib(mem.afterWeights)} MiB after the ` +
    `weights, ${mib(mem.afterTokenizer)} MiB after the tokenizer`);
  assert.ok(mem.afterWeights - mem.atStart < 64 * 2 ** 20, "weight streaming grew wasm memory by less than 64 MiB");
}

for (const backend of ["cpu", "webgpu"]) {
  // SwiftShader takes seconds a token: fewer of them on WebGPU.
  const tokens = backend === "cpu" ? TOKENS : 2;
  test(`greedy text completion on ${backend}: the same tokens as the native engine`, async () => {
    if (backend === "webgpu") await gpuEngine();
    // The native engine on the same backend: the CPU engine's 8-bit activations and the GPU's f32 ones may break a
    // near-tie differently (the base 270M echoing a chat is one).
    const native = await nativeGenerate(["--prompt", PROMPT, "--max-tokens", String(tokens), "--context", "256",
      "--backend", backend === "cpu" ? "cpu" : "gpu"]);
    const t = Date.now();
    const got = await page.evaluate(
      ({ prompt, tokens, gpu }) =>
        (gpu ? window.gpuEngine : window.engine).completions.create({ prompt, max_tokens: tokens, temperature: 0 }),
      { prompt: PROMPT, tokens, gpu: backend === "webgpu" },
    );
    console.log(`browser, ${backend}: ${JSON.stringify(got.choices[0].text)} in ` +
      `${((Date.now() - t) / 1000).toFixed(1)} s, prefill ${got.usage.prefill_tok_s.toFixed(3)} tok/s, ` +
      `decode ${got.usage.decode_tok_s.toFixed(3)} tok/s, ${got.usage.threads} thread(s)`);
    assert.equal(got.usage.backend, backend);
    assert.deepEqual(got.gemma.prompt_ids, native.prompt_ids);
    assert.deepEqual(got.gemma.generated_ids, native.generated_ids);
    assert.equal(got.choices[0].text, native.text);
    assert.equal(got.choices[0].finish_reason, "length");
    assert.equal(got.usage.completion_tokens, tokens);
    assert.equal(got.usage.prompt_tokens, native.prompt_ids.length);
    assert.deepEqual(errors, []);
  });
}

test("chat: a second turn reuses the first turn's KV cache and matches the native chat", async () => {
  const turns = ["Hi", "Bye"];
  const perTurn = 2;
  const native = await nativeGenerate([
    "--chat", ...turns.flatMap((p) => ["--prompt", p]), "--max-tokens", String(perTurn), "--context", "256",
    "--backend", "cpu",
  ]);
  const t = Date.now();
  const got = await page.evaluate(async ({ turns, perTurn }) => {
    const messages = [];
    const out = [];
    for (const content of turns) {
      messages.push({ role: "user", content });
      const chunks = await window.engine.chat.completions.create({ messages, max_tokens: perTurn, temperature: 0, stream: true });
      let text = "";
      let last;
      for await (const chunk of chunks) {
        text += chunk.choices[0]?.delta?.content ?? "";
        last = chunk;
      }
      out.push({ text, usage: last.usage, gemma: last.gemma, finish: last.choices[0].finish_reason });
      messages.push({ role: "assistant", content: text });
    }
    return out;
  }, { turns, perTurn });
  console.log(`chat: ${JSON.stringify(got.map((g) => g.text))} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  assert.deepEqual(got.flatMap((g) => g.gemma.prompt_ids), native.prompt_ids, "the same tokens were fed");
  assert.deepEqual(got.flatMap((g) => g.gemma.generated_ids), native.generated_ids);
  assert.equal(got[0].usage.reused_tokens, 0);
  // The second turn ran only its own tokens: the first turn (prompt and reply) stayed in the cache.
  assert.equal(got[1].usage.reused_tokens, got[0].usage.prompt_tokens + perTurn - 1);
  assert.deepEqual(errors, []);
});

test("interrupt stops a streaming generation after the current token", async () => {
  const max = 32;
  const t = Date.now();
  const got = await page.evaluate(async ({ max }) => {
    const chunks = await window.engine.completions.create({ prompt: "Once upon a time", max_tokens: max, temperature: 0, stream: true });
    let pieces = 0;
    let last;
    for await (const chunk of chunks) {
      if (chunk.choices[0].text) {
        pieces += 1;
        if (pieces === 1) window.engine.interrupt();
      }
      last = chunk;
    }
    return { pieces, finish: last.choices[0].finish_reason, usage: last.usage };
  }, { max });
  console.log(`interrupt: ${got.usage.completion_tokens} tokens before stopping, ${((Date.now() - t) / 1000).toFixed(1)} s`);
  assert.equal(got.finish, "abort");
  assert.ok(got.usage.completion_tokens >= 1 && got.usage.completion_tokens <= 3, `${got.usage.completion_tokens} tokens`);

  // An AbortSignal ends the call with an Aborted error instead.
  const aborted = await page.evaluate(async () => {
    const controller = new AbortController();
    const chunks = await window.engine.completions.create({
      prompt: "Once upon a time", max_tokens: 32, temperature: 0, stream: true, signal: controller.signal,
    });
    try {
      for await (const chunk of chunks) if (chunk.choices[0].text) controller.abort();
      return "no error";
    } catch (e) {
      return `${e.name}: ${e.code}`;
    }
  });
  assert.equal(aborted, "GemmaWebError: Aborted");
  assert.deepEqual(errors, []);
});

test("without a seed each request draws its own and reports it; passing that seed gives the same answer", async () => {
  const got = await page.evaluate(async () => {
    // Sampling over the whole vocabulary, hot: two unseeded answers would rarely agree by chance.
    const request = { prompt: "My favourite word is", temperature: 1.5, top_k: 0, top_p: 1 };
    const first = await window.engine.completions.create({ ...request, max_tokens: 2 });
    const second = await window.engine.completions.create({ ...request, max_tokens: 1 });
    const replay = await window.engine.completions.create({ ...request, max_tokens: 2, seed: first.gemma.seed });
    return { first: first.gemma, second: second.gemma, replay: replay.gemma };
  });
  console.log(`seeds: ${got.first.seed}, ${got.second.seed}; tokens ${got.first.generated_ids} and ` +
    `${got.replay.generated_ids} replayed`);
  assert.ok(Number.isSafeInteger(got.first.seed) && got.first.seed >= 0, `seed ${got.first.seed}`);
  assert.notEqual(got.first.seed, got.second.seed, "each request without a seed draws a fresh one");
  assert.equal(got.replay.seed, got.first.seed);
  assert.deepEqual(got.replay.generated_ids, got.first.generated_ids, "the reported seed replays the answer");
  assert.deepEqual(errors, []);
});

test("errors carry a stable code", async () => {
  const got = await page.evaluate(async () => {
    const { createEngine } = await import("/gemma-web.js");
    const codes = [];
    for (const run of [
      () => createEngine({ model: "no-such-model" }),
      () => createEngine({ model: "/models/does-not-exist.gguf" }),
      () => createEngine({ model: new File([new Uint8Array(4096)], "zeros.gguf") }),
      () => window.engine.chat.completions.create({ messages: [] }),
      () => window.engine.completions.create({ prompt: "x", temperature: -1 }),
    ]) {
      try {
        await run();
        codes.push("no error");
      } catch (e) {
        codes.push(`${e.constructor.name}:${e.code}`);
      }
    }
    return codes;
  });
  assert.deepEqual(got, [
    "GemmaWebError:Unsupported",
    "GemmaWebError:Network",
    "GemmaWebError:BadModel",
    "GemmaWebError:Unsupported",
    "GemmaWebError:Unsupported",
  ]);
});

test("a local File loads through Blob.slice reads and generates the native engine's token", async () => {
  const native = await nativeGenerate(["--prompt", PROMPT, "--max-tokens", "1", "--context", "256", "--backend", "cpu"]);
  const got = await page.evaluate(async (prompt) => {
    const { createEngine } = await import("/gemma-web.js");
    // The bytes as a user's file would be: a Blob in the page, never a URL the worker could fetch.
    const blob = await (await fetch("/models/gemma-3-270m-q4_k_m.gguf")).blob();
    const file = new File([blob], "gemma-3-270m-q4_k_m.gguf");
    const engine = await createEngine({ model: file, contextLength: 64 });
    try {
      const out = await engine.completions.create({ prompt, max_tokens: 1, temperature: 0 });
      return { ids: out.gemma.generated_ids, model: engine.model, tokens: await engine.tokenize(prompt) };
    } finally {
      await engine.unload();
    }
  }, PROMPT);
  assert.equal(got.model, "gemma-3-270m-q4_k_m.gguf");
  assert.deepEqual(got.tokens, native.prompt_ids);
  assert.deepEqual(got.ids, native.generated_ids);
  assert.deepEqual(errors, []);
});

/**
 * Runs a greedy streaming chat turn (`messages`) or text completion (`prompt`) in the page and destroys the GPU device
 * after the first piece of text. `then` says what happens next: "none", "loseAgain" (the device goes again as soon as
 * the engine has recovered) or "interrupt" (Stop is pressed while the model is being reloaded).
 */
async function streamLosingDevice({ messages, prompt, tokens, then = "none" }) {
  await gpuEngine();
  return page.evaluate(async ({ messages, prompt, tokens, then }) => {
    const engine = window.gpuEngine;
    const events = [];
    const onLost = (e) => {
      events.push({ type: "devicelost", message: e.detail.message });
      if (then === "interrupt") engine.interrupt();
    };
    const onRecovered = (e) => {
      events.push({ type: "recovered", seconds: e.detail.seconds });
      if (then === "loseAgain") engine.simulateDeviceLoss();
    };
    engine.addEventListener("devicelost", onLost);
    engine.addEventListener("recovered", onRecovered);
    let text = "";
    let last = null;
    try {
      const request = { max_tokens: tokens, temperature: 0, stream: true };
      const chunks = messages
        ? await engine.chat.completions.create({ messages, ...request })
        : await engine.completions.create({ prompt, ...request });
      for await (const chunk of chunks) {
        const piece = messages ? chunk.choices[0].delta?.content : chunk.choices[0].text;
        if (piece) {
          if (text === "") engine.simulateDeviceLoss();
          text += piece;
        }
        last = chunk;
      }
      return { text, events, gemma: last.gemma, usage: last.usage, finish: last.choices[0].finish_reason };
    } catch (e) {
      return { text, events, error: { name: e.name, code: e.code, message: e.message } };
    } finally {
      engine.removeEventListener("devicelost", onLost);
      engine.removeEventListener("recovered", onRecovered);
    }
  }, { messages, prompt, tokens, then });
}

test("a GPU device lost mid-answer: the model comes back from storage, no network, and the chat goes on", async () => {
  const turns = ["Hi", "Bye"];
  const perTurn = 2;
  const native = await nativeGenerate([
    "--chat", ...turns.flatMap((p) => ["--prompt", p]), "--max-tokens", String(perTurn), "--context", "256",
  ]);
  const before = await server.settledLog();
  const t = Date.now();
  const messages = [{ role: "user", content: turns[0] }];
  const first = await streamLosingDevice({ messages, tokens: perTurn });
  console.log(`device loss: ${JSON.stringify(first.events)}, ${((Date.now() - t) / 1000).toFixed(1)} s for the turn`);
  assert.equal(first.error, undefined, JSON.stringify(first.error));
  assert.deepEqual(first.events.map((e) => e.type), ["devicelost", "recovered"]);
  assert.equal(first.gemma.device_recoveries, 1);
  assert.equal(first.finish, "length");
  assert.equal(sentBytes((await server.settledLog()).slice(before.length)), 0, "no model byte fetched to recover");

  // The conversation is back in the new device's KV cache: the next turn runs only its own tokens, and the whole
  // chat (greedy, one answer cut by the loss) is token for token the native engine's uninterrupted one.
  messages.push({ role: "assistant", content: first.text });
  messages.push({ role: "user", content: turns[1] });
  const second = await page.evaluate((messages) =>
    window.gpuEngine.chat.completions.create({ messages, max_tokens: 2, temperature: 0 }), messages);
  assert.equal(second.usage.reused_tokens, first.usage.prompt_tokens + perTurn - 1);
  assert.deepEqual([...first.gemma.prompt_ids, ...second.gemma.prompt_ids], native.prompt_ids);
  assert.deepEqual([...first.gemma.generated_ids, ...second.gemma.generated_ids], native.generated_ids);
  assert.deepEqual(errors, []);
});

test("Stop pressed while the model reloads after a device loss ends the answer right after the recovery", async () => {
  const native = await nativeGenerate(["--prompt", PROMPT, "--max-tokens", "8", "--context", "256"]);
  const got = await streamLosingDevice({ prompt: PROMPT, tokens: 8, then: "interrupt" });
  assert.equal(got.error, undefined, JSON.stringify(got.error));
  assert.deepEqual(got.events.map((e) => e.type), ["devicelost", "recovered"]);
  assert.equal(got.finish, "abort");
  // The tokens before the loss, then one after the recovery.
  assert.ok(got.usage.completion_tokens >= 2 && got.usage.completion_tokens <= 3, `${got.usage.completion_tokens} tokens`);
  assert.deepEqual(got.gemma.generated_ids, native.generated_ids.slice(0, got.gemma.generated_ids.length));
  assert.deepEqual(errors, []);
});

test("a second device loss while recovering is a clear DeviceLost error, not a loop", async () => {
  const got = await streamLosingDevice({ prompt: PROMPT, tokens: 4, then: "loseAgain" });
  assert.deepEqual(got.events.map((e) => e.type), ["devicelost", "recovered"]);
  assert.equal(got.error?.name, "GemmaWebError");
  assert.equal(got.error?.code, "DeviceLost");
  assert.match(got.error.message, /lost again/);
  assert.deepEqual(errors, []);
});
