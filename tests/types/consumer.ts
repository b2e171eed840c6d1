// A program that uses gemma-web the way the README shows, compiled by tests/e2e/package.test.mjs with
// `tsc --noEmit --strict` against the package's declarations (imported by package name, through `exports`).
// Each `@ts-expect-error` line is a mistake the declarations must catch: were a type `any`, the directive would be
// unused and the compile would fail.
import {
  createEngine, deleteStoredModel, ERROR_CODES, GemmaWebError, hasStorage, hasWebGpu, listStoredModels, loadCatalog,
} from "gemma-web";
import type {
  ChatCompletionChunk, ChatMessage, Engine, GemmaWebErrorCode, LoadProgress, TextCompletion, Usage,
} from "gemma-web";
import "gemma-web/gemma-chat";
import type { GemmaChatAnswer, GemmaChatElement, GemmaChatState } from "gemma-web/gemma-chat";

async function chat(output: HTMLElement): Promise<Usage | undefined> {
  if (!hasWebGpu()) return undefined;
  const progress: LoadProgress[] = [];
  const engine: Engine = await createEngine({
    model: "gemma-3-1b-it",
    contextLength: 1024,
    store: hasStorage(),
    backend: "auto",
    threads: 2,
    signal: new AbortController().signal,
    onProgress: (p) => {
      progress.push(p);
      const left: number | null = p.secondsLeft;
      output.title = `${p.phase} ${p.loaded}/${p.total} ${p.fetched} ${p.bytesPerSecond} ${left}`;
    },
  });
  const tier: string = engine.info.capabilities?.tier ?? `cpu, ${engine.info.threads} threads: ${engine.info.backendReason}`;
  const where: "webgpu" | "cpu" = engine.backend;
  const layers: number = engine.info.header.config.layers;
  const context: number = engine.info.contextLength;
  const fromStorage: boolean | undefined = engine.info.stored?.fromStorage;
  const catalogMode: "chat" | "text" | undefined = engine.catalogEntry?.mode;
  console.log(tier, where, layers, context, fromStorage, catalogMode, engine.capabilities?.f16, engine.model);

  engine.addEventListener("devicelost", (e) => console.log(e.detail.message.toUpperCase()));
  engine.addEventListener("recovered", (e) => console.log(e.detail.seconds.toFixed(1)));

  const messages: ChatMessage[] = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
  const chunks = await engine.chat.completions.create({ messages, stream: true, max_tokens: 64, temperature: 0.7 });
  let usage: Usage | undefined;
  for await (const chunk of chunks) {
    const c: ChatCompletionChunk = chunk;
    output.textContent += c.choices[0].delta.content ?? "";
    if (c.choices[0].finish_reason === "abort") engine.interrupt();
    usage = c.usage ?? usage;
  }
  const whole = await engine.chat.completions.create({ messages, top_k: 40, top_p: 0.9, seed: 1 });
  const reply: string = whole.choices[0].message.content;
  const text: TextCompletion = await engine.completions.create({ prompt: "Once upon a time", max_tokens: 8 });
  const ids: number[] = text.gemma.generated_ids;
  const recoveries: number = text.gemma.device_recoveries;
  if (recoveries === 0) engine.simulateDeviceLoss();
  const tokens: number[] = await engine.tokenize(reply, { addBos: false });
  for await (const chunk of await engine.completions.create({ prompt: "x", stream: true })) {
    output.textContent += chunk.choices[0].text;
  }
  console.log(ids.length + tokens.length + (usage?.completion_tokens ?? 0) + (usage?.prefill_tok_s ?? 0));

  // @ts-expect-error: the field is max_tokens
  await engine.chat.completions.create({ messages, max_token: 5 });
  // @ts-expect-error: a chat needs messages, not a prompt
  await engine.chat.completions.create({ prompt: "Hi" });
  // @ts-expect-error: roles are system, developer, user and assistant
  const bad: ChatMessage = { role: "bot", content: "x" };
  // @ts-expect-error: a streamed chunk has a delta, not a message
  for await (const chunk of chunks) console.log(chunk.choices[0].message);
  // @ts-expect-error: a non-streamed completion is not iterable
  for await (const chunk of whole) console.log(chunk);
  // @ts-expect-error: no such event
  engine.addEventListener("devicelost", (e) => console.log(e.detail.seconds.toFixed(1)));
  console.log(bad);

  await engine.resetChat();
  await engine.unload();
  return usage;
}

async function errors(): Promise<string> {
  const codes: readonly GemmaWebErrorCode[] = ERROR_CODES;
  try {
    await createEngine({ model: new File([], "x.gguf") });
  } catch (e) {
    if (e instanceof GemmaWebError) {
      const code: GemmaWebErrorCode = e.code;
      if (code === "Quota" || code === "WebGPUUnavailable" || code === "PromptTooLong") return e.message;
      // @ts-expect-error: not one of the codes
      if (code === "OutOfDisk") return "";
    }
  }
  const catalog = await loadCatalog();
  const stored = await listStoredModels();
  for (const m of stored) if (!m.usable && m.state !== "complete") await deleteStoredModel(m.id);
  return `${codes.length} ${catalog.default} ${catalog.models[0]?.approxBytes ?? catalog.models[0]?.bytes}`;
}

function widget(): GemmaChatElement {
  const el = document.createElement("gemma-chat");
  el.model = "gemma-3-270m";
  el.system = "You answer questions about this page.";
  el.loading = "lazy";
  el.contextSelector = "main";
  el.maxTokens = 128;
  el.temperature = 0;
  el.addEventListener("progress", (e) => console.log(e.detail.phase, e.detail.loaded / e.detail.total));
  el.addEventListener("ready", (e) => console.log(e.detail.model, e.detail.mode, e.detail.info.contextLength));
  el.addEventListener("token", (e) => console.log(e.detail.text.length));
  el.addEventListener("done", (e) => {
    const answer: GemmaChatAnswer = e.detail;
    console.log(answer.text, answer.finish_reason, answer.usage?.completion_tokens);
  });
  el.addEventListener("error", (e) => {
    const code: GemmaWebErrorCode = e.detail.code;
    console.log(code, e.detail.message, e.detail.error.code);
  });
  el.addEventListener("recovered", (e) => console.log(e.detail.seconds));
  el.addEventListener("click", (e) => console.log(e.clientX));
  // @ts-expect-error: loading is interaction, lazy or eager
  el.loading = "later";
  // @ts-expect-error: a token event's detail has text, not token
  el.addEventListener("token", (e) => console.log(e.detail.token));
  // @ts-expect-error: state is read-only
  el.state = "ready";
  const state: GemmaChatState = el.state;
  const found = document.querySelector("gemma-chat");
  found?.interrupt();
  void el.load().then((engine) => engine.info.contextLength);
  void el.ask("What is this page about?").then((a) => a.text);
  void el.clear();
  console.log(state, el.mode, el.engine?.model, el.error?.code);
  document.body.append(el);
  return el;
}

export { chat, errors, widget };
