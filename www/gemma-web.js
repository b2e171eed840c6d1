// gemma-web's public ES module: Gemma in the page, on the GPU through WebGPU or on the CPU, with an OpenAI-style API.
//
//   import { createEngine } from "/gemma-web.js";
//   const engine = await createEngine({ model: "gemma-3-270m", onProgress: (p) => console.log(p.loaded, p.total) });
//   const chunks = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true });
//   for await (const chunk of chunks) out.textContent += chunk.choices[0]?.delta?.content ?? "";
//
// The engine runs in a dedicated worker (www/worker.js); this module only sends it messages. `model` is a URL of a
// .gguf file, an id from catalog.json, `hf:org/repo/file.gguf[@revision]` or a huggingface.co URL (www/hub.js), or a
// File/Blob the user picked. `backend` says where the model runs: "auto" (the default) takes a hardware WebGPU adapter
// and otherwise the CPU engine (no WebGPU, or only a software adapter such as SwiftShader); "webgpu" or "cpu" insist.
// The CPU engine computes on several threads when the page is cross-origin isolated (COOP/COEP headers). A URL's weights are downloaded once into the
// browser's storage (OPFS, www/store.js: resumable, verified) and loaded from there afterwards; `store: false` streams
// them from the server with Range requests on every load instead.

import { HF_ENDPOINT, parseHubRef, resolveHub, resolveUrl } from "./hub.js";

/** The stable error codes; every error this module throws or rejects with is a GemmaWebError with one of them. */
export const ERROR_CODES = Object.freeze([
  "WebGPUUnavailable", "Unsupported", "BadModel", "Integrity", "Quota", "Network", "DeviceLost",
  "OutOfMemory", "Aborted", "PromptTooLong", "Io",
]);

export class GemmaWebError extends Error {
  /** @param {string} code one of ERROR_CODES @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "GemmaWebError";
    this.code = code;
  }
}

const CATALOG_URL = new URL("./catalog.json", import.meta.url);
const WORKER_URL = new URL("./worker.js", import.meta.url);
let workerShim = null;

/**
 * A browser starts a worker only from the page's own origin. Where this module came from another one (a CDN), a
 * same-origin blob module imports the worker script from there instead (which needs CORS, as the module did).
 */
function workerUrl() {
  if (typeof location === "undefined" || WORKER_URL.origin === location.origin) return WORKER_URL;
  workerShim ??= URL.createObjectURL(new Blob([`import ${JSON.stringify(WORKER_URL.href)};`], { type: "text/javascript" }));
  return workerShim;
}

/** Gemma's recommended sampling (temperature 1, top-k 64, top-p 0.95); `temperature: 0` is greedy. */
const DEFAULTS = { max_tokens: 256, temperature: 1.0, top_k: 64, top_p: 0.95 };

/** The catalog (www/catalog.json): `{ models: [{ id, name, url, mode, ... }] }`, URLs resolved against the file. */
export async function loadCatalog() {
  let res;
  try {
    res = await fetch(CATALOG_URL);
  } catch (e) {
    throw new GemmaWebError("Network", `could not fetch ${CATALOG_URL}: ${e.message}`);
  }
  if (!res.ok) throw new GemmaWebError("Network", `${CATALOG_URL}: HTTP ${res.status}`);
  const catalog = await res.json();
  for (const m of catalog.models) m.url = new URL(m.url, CATALOG_URL).href;
  return catalog;
}

/** Whether this browser exposes WebGPU at all (an adapter may still be missing). */
export function hasWebGpu() {
  return typeof navigator !== "undefined" && "gpu" in navigator;
}

/** The catalog entry for a model string: its id, or its URL. */
async function catalogEntry(model, url) {
  let models;
  try {
    ({ models } = await loadCatalog());
  } catch (e) {
    if (url) return null; // a URL does not need the catalog
    throw e;
  }
  if (!url) {
    const entry = models.find((m) => m.id === model);
    if (!entry) {
      throw new GemmaWebError("Unsupported", `no model ${JSON.stringify(model)} in the catalog (${models.map((m) => m.id).join(", ")})`);
    }
    return entry;
  }
  return models.find((m) => m.url === url) ?? null;
}

const asError = (e) => (e instanceof GemmaWebError ? e : new GemmaWebError(e?.code || "Unsupported", e?.message ?? String(e)));

/**
 * What a model string names, before anything is downloaded: `{ name, url, fetchUrl, size, sha256, revision, license,
 * repo, file, entry }`. `model` is a catalog id, `hf:org/repo/file.gguf[@revision]`, a huggingface.co `blob/` or
 * `resolve/` URL (resolved through the hub's API to a pinned commit, size and sha256) or the URL of a .gguf file
 * anywhere (size and sha256 then unknown until the download). `hfEndpoint` is the hub that `hf:` names resolve on.
 */
export async function describeModel(model, { hfEndpoint = HF_ENDPOINT, signal } = {}) {
  try {
    if (typeof model !== "string" || model === "") {
      throw new GemmaWebError("Unsupported", "model must be a URL, an hf: name, a catalog id or a File");
    }
    const isName = !model.startsWith("hf:") && !model.includes("/") && !model.endsWith(".gguf");
    const base = typeof location !== "undefined" ? location.href : import.meta.url;
    const hubRef = isName ? null : parseHubRef(model, hfEndpoint);
    const url = isName || model.startsWith("hf:") ? null : new URL(model, base).href;
    const entry = await catalogEntry(model, isName ? null : url ?? (hubRef && resolveUrl(hubRef, hubRef.revision)));
    const ref = entry?.hf
      ? { endpoint: hfEndpoint.replace(/\/+$/, ""), repo: entry.hf.repo, file: entry.hf.file, revision: entry.hf.revision ?? "main" }
      : hubRef;
    const name = entry?.id ?? (ref ? `${ref.repo}/${ref.file}` : decodeURIComponent(url.split("/").pop() || url));
    if (!ref) {
      const u = entry ? entry.url : url;
      return { name, url: u, fetchUrl: u, size: entry?.bytes ?? null, sha256: entry?.sha256 ?? null,
        revision: null, license: entry?.license ?? null, repo: null, file: null, entry };
    }
    // A catalog entry pinned to a commit, with its size and sha256, needs no request to the hub.
    if (entry?.hf && /^[0-9a-f]{40}$/.test(ref.revision) && entry.bytes && entry.sha256 && ref.endpoint === HF_ENDPOINT) {
      return { name, url: entry.url, fetchUrl: resolveUrl(ref, ref.revision), size: entry.bytes, sha256: entry.sha256,
        revision: ref.revision, license: entry.license ?? null, repo: ref.repo, file: ref.file, entry };
    }
    let hub;
    try {
      hub = await resolveHub(ref, { signal });
    } catch (e) {
      // The hub cannot be reached (offline, an outage): a copy of this model already in storage still loads.
      const stored = e?.code === "Network" ? await storedCopy(entry?.url ?? resolveUrl(ref, ref.revision)) : null;
      if (!stored) throw e;
      return { name, url: stored.url, fetchUrl: stored.url, size: stored.size, sha256: stored.sha256,
        revision: null, license: entry?.license ?? null, repo: ref.repo, file: ref.file, entry, offline: true };
    }
    // The catalog's values, checked against the hub's.
    if (entry?.sha256 && entry.sha256.toLowerCase() !== hub.sha256) {
      throw new GemmaWebError("Integrity", `${hub.repo}/${hub.file} at ${hub.commit}: the hub says sha256 ${hub.sha256}, ` +
        `the catalog ${entry.sha256}`);
    }
    if (entry?.bytes && entry.bytes !== hub.size) {
      throw new GemmaWebError("Integrity", `${hub.repo}/${hub.file} at ${hub.commit}: the hub says ${hub.size} bytes, ` +
        `the catalog ${entry.bytes}`);
    }
    return { name, url: entry?.url ?? hub.url, fetchUrl: hub.fetchUrl, size: hub.size, sha256: hub.sha256,
      revision: hub.commit, license: hub.license ?? entry?.license ?? null, repo: hub.repo, file: hub.file, entry };
  } catch (e) {
    throw asError(e);
  }
}

/** The complete stored model kept under `url`, if any (its size and sha256 as verified when it was downloaded). */
async function storedCopy(url) {
  if (!hasStorage()) return null;
  const models = await listStoredModels().catch(() => []);
  return models.find((m) => m.url === url && m.usable && m.sha256 && m.size) ?? null;
}

async function resolveSource(model, options) {
  if (typeof Blob !== "undefined" && model instanceof Blob) {
    return { source: { kind: "file", file: model }, name: model.name || "local file", entry: null };
  }
  const d = await describeModel(model, options);
  const source = { kind: "url", url: d.url, fetchUrl: d.fetchUrl };
  if (d.sha256) source.sha256 = d.sha256;
  if (d.size && (d.sha256 || d.revision)) source.size = d.size;
  if (d.revision) source.revision = d.revision;
  return { source, name: d.name, entry: d.entry };
}

/** The worker and its calls: each call is a promise, with optional handlers for its streamed messages. */
class WorkerLink {
  #worker;
  #next = 1;
  #calls = new Map();
  #dead = null;

  constructor() {
    try {
      this.#worker = new Worker(workerUrl(), { type: "module", name: "gemma-web" });
    } catch (e) {
      // A Content-Security-Policy without worker-src for this script, or a browser without module workers.
      throw new GemmaWebError("Unsupported", `could not start the engine's worker (${WORKER_URL.href}): ${e.message}`);
    }
    this.#worker.onmessage = (event) => {
      const msg = event.data;
      const call = this.#calls.get(msg.id);
      if (!call) return;
      if (msg.type === "done") {
        this.#calls.delete(msg.id);
        call.resolve(msg.value);
      } else if (msg.type === "error") {
        this.#calls.delete(msg.id);
        call.reject(new GemmaWebError(msg.error.code, msg.error.message));
      } else {
        call.onEvent?.(msg);
      }
    };
    // A trap in the wasm module or a script error ends the worker: fail everything in flight.
    this.#worker.onerror = (event) => {
      event.preventDefault?.();
      this.fail(new GemmaWebError("Unsupported", `the engine stopped: ${event.message || "worker error"}`));
    };
  }

  /** An id for a call, known before the call is made: interrupt() names a generate call by it. */
  newId() {
    return this.#next++;
  }

  call(type, fields = {}, onEvent = null, id = this.newId()) {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject, onEvent });
      this.#worker.postMessage({ type, id, ...fields });
    });
  }

  /** Stops the generate call `id` (whatever generates when undefined); a call that has ended is not affected. */
  interrupt(id) {
    this.signal("interrupt", { id });
  }

  /** A message that is not a call (no answer), handled by the worker at once, even during a generation. */
  signal(type, fields = {}) {
    if (!this.#dead) this.#worker.postMessage({ type, ...fields });
  }

  fail(error) {
    this.#dead ??= error;
    this.#worker.terminate();
    for (const call of this.#calls.values()) call.reject(error);
    this.#calls.clear();
  }
}

/** Whether this browser has the Origin Private File System the weight store needs. */
export function hasStorage() {
  return typeof navigator !== "undefined" && Boolean(navigator.storage?.getDirectory);
}

/** One call on a short-lived worker (the store's functions run only in a worker). */
async function once(type, fields) {
  const link = new WorkerLink();
  try {
    return await link.call(type, fields);
  } finally {
    link.fail(new GemmaWebError("Aborted", "done"));
  }
}

/** Models kept in this browser's storage: [{ id, url, size, storedBytes, state, usable, ... }]. */
export async function listStoredModels() {
  return hasStorage() ? once("listStored") : [];
}

/** Deletes a stored model (its id from listStoredModels). */
export async function deleteStoredModel(modelId) {
  return once("deleteStored", { modelId });
}

const BACKENDS = ["auto", "webgpu", "cpu"];

/**
 * Loads a model into a new engine. Progress comes in phases: "download" (into storage; `fetched` bytes crossed the
 * network), "verify" (a stored copy is hashed again), "load" (weights to the GPU, or into the CPU engine's memory).
 * @param {{ model: string | Blob, onProgress?: (p: { phase: string, loaded: number, total: number, fetched: number,
 *   bytesPerSecond: number, secondsLeft: number | null }) => void, signal?: AbortSignal, contextLength?: number,
 *   store?: boolean, backend?: "auto" | "webgpu" | "cpu", threads?: number }} options
 */
export async function createEngine({
  model, onProgress, signal, contextLength, store = hasStorage(), hfEndpoint = HF_ENDPOINT, backend = "auto", threads,
} = {}) {
  if (!BACKENDS.includes(backend)) {
    throw new GemmaWebError("Unsupported", `backend must be one of ${BACKENDS.join(", ")}, not ${JSON.stringify(backend)}`);
  }
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
    throw new GemmaWebError("Unsupported", `threads must be a whole number >= 1, not ${JSON.stringify(threads)}`);
  }
  if (backend === "webgpu" && !hasWebGpu()) {
    throw new GemmaWebError("WebGPUUnavailable",
      "this browser does not offer WebGPU; use a recent Chrome, Edge or another browser with WebGPU enabled, " +
      'or the CPU backend (backend: "cpu" or "auto")');
  }
  if (signal?.aborted) throw new GemmaWebError("Aborted", "aborted before loading");
  const { source, name, entry } = await resolveSource(model, { hfEndpoint, signal });
  if (source.kind === "url") source.store = store;
  const link = new WorkerLink();
  let started = performance.now();
  let fetched = 0;
  let phase = null;
  const onAbort = () => link.fail(new GemmaWebError("Aborted", "loading was aborted"));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const options = { backend, ...(contextLength ? { contextLength } : {}), ...(threads ? { threads } : {}) };
    const info = await link.call("load", { source, options }, (msg) => {
      if (msg.type === "fetched") fetched = msg.bytes;
      if (msg.type === "download") {
        fetched = msg.bytesFetched;
        const bytesPerSecond = msg.mbPerS * 1e6;
        const left = msg.bytesTotal - msg.bytesDone;
        const wait = msg.phase === "waiting" ? { retryInSeconds: msg.retryInSeconds, reason: msg.reason } : {};
        onProgress?.({
          phase: { verifying: "verify", waiting: "waiting" }[msg.phase] ?? "download", loaded: msg.bytesDone,
          total: msg.bytesTotal, fetched, bytesPerSecond, secondsLeft: bytesPerSecond > 0 ? left / bytesPerSecond : null,
          ...wait,
        });
        return;
      }
      if (msg.type !== "progress" || !onProgress) return;
      if (phase !== "load") {
        // The rate of the GPU upload, not of the download before it.
        phase = "load";
        started = performance.now();
      }
      const seconds = (performance.now() - started) / 1000;
      const bytesPerSecond = seconds > 0 ? msg.loaded / seconds : 0;
      const secondsLeft = bytesPerSecond > 0 ? (msg.total - msg.loaded) / bytesPerSecond : null;
      onProgress({ phase: "load", loaded: msg.loaded, total: msg.total, fetched, bytesPerSecond, secondsLeft });
    });
    return new Engine(link, info, name, entry);
  } catch (e) {
    link.fail(e instanceof GemmaWebError ? e : new GemmaWebError("Unsupported", String(e)));
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

let completionCounter = 0;

/** An async queue of chunks: the worker pushes, the caller's `for await` pulls. */
function chunkQueue() {
  const items = [];
  let wake = null;
  let end = null; // { error } or { done: true }
  return {
    push(item) {
      items.push(item);
      wake?.();
    },
    close(error) {
      end = error ? { error } : { done: true };
      wake?.();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (items.length > 0) {
          yield items.shift();
          continue;
        }
        if (end) {
          if (end.error) throw end.error;
          return;
        }
        await new Promise((r) => (wake = r));
        wake = null;
      }
    },
  };
}

/**
 * A loaded model. Also an EventTarget: when the GPU device is lost (a driver reset, the GPU process crashing), the
 * engine loads the model again on a new device, from browser storage (no network for a stored model), and the
 * running answer goes on where it stopped with the conversation restored. It dispatches `devicelost`
 * (CustomEvent, detail `{ message }`) when that starts and `recovered` (detail `{ seconds }`) when the model is back;
 * a second loss during the same call rejects it with a DeviceLost error.
 */
class Engine extends EventTarget {
  #link;
  #queue = Promise.resolve();
  #unloaded = false;
  /** Ids of the generate calls created and not yet ended, oldest (the running one) first. */
  #pending = [];

  constructor(link, info, name, entry) {
    super();
    this.#link = link;
    /**
     * The model's header summary; where it runs (`backend`: "webgpu" or "cpu", `backendReason`, `threads`,
     * `threadsReason`: why fewer threads than asked for, or null); the GPU
     * capabilities in use (`capabilities.tier`; null on the CPU); sizes.
     */
    this.info = info;
    this.model = name;
    /** The catalog entry the model came from, if any. */
    this.catalogEntry = entry;
    this.chat = { completions: { create: (request) => this.#create("chat", request) } };
    this.completions = { create: (request) => this.#create("text", request) };
  }

  /** The GPU capabilities in use; null on the CPU backend. */
  get capabilities() {
    return this.info.capabilities;
  }

  /** Where the model runs: "webgpu" or "cpu". */
  get backend() {
    return this.info.backend;
  }

  /**
   * Stops the current generation (the running one, or the next to run when none has started) after its current
   * token, or between prompt blocks of a long prefill; it ends normally with finish_reason "abort". Generations
   * queued behind it are not affected.
   */
  interrupt() {
    if (this.#pending.length > 0) this.#link.interrupt(this.#pending[0]);
  }

  /**
   * Destroys the GPU device, as a driver reset would, to try the recovery above: a running generation (or the next
   * one) loses its device, and the engine recovers.
   */
  simulateDeviceLoss() {
    this.#link.signal("loseDevice");
  }

  /** Token ids of `text` (BOS first unless `addBos: false`); answered at once, also while a generation runs. */
  async tokenize(text, { addBos = true } = {}) {
    return this.#link.call("tokenize", { text, addBos });
  }

  /** Forgets the conversation in the KV cache. */
  async resetChat() {
    return this.#serial(() => this.#link.call("reset"));
  }

  /** Frees the GPU memory and ends the worker; the engine cannot be used afterwards. */
  async unload() {
    if (this.#unloaded) return;
    this.#unloaded = true;
    this.#link.interrupt();
    try {
      await this.#link.call("unload");
    } finally {
      this.#link.fail(new GemmaWebError("Unsupported", "the engine was unloaded"));
    }
  }

  #serial(task) {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }

  #request(mode, r) {
    if (mode === "chat") {
      if (!Array.isArray(r.messages) || r.messages.length === 0) {
        throw new GemmaWebError("Unsupported", "chat.completions.create needs a non-empty messages array");
      }
      for (const m of r.messages) {
        if (typeof m.content !== "string") throw new GemmaWebError("Unsupported", "message content must be a string");
      }
    } else if (typeof r.prompt !== "string") {
      throw new GemmaWebError("Unsupported", "completions.create needs a prompt string");
    }
    const pick = (v, d) => (v === undefined || v === null ? d : v);
    return {
      ...(mode === "chat"
        ? { messages: r.messages.map((m) => ({ role: m.role, content: m.content })) }
        : { prompt: r.prompt }),
      maxTokens: pick(r.max_tokens, DEFAULTS.max_tokens),
      temperature: pick(r.temperature, DEFAULTS.temperature),
      topK: pick(r.top_k, DEFAULTS.top_k),
      topP: pick(r.top_p, DEFAULTS.top_p),
      repetitionPenalty: pick(r.repetition_penalty, 1.0),
      // Without one, the engine draws a fresh seed per request and reports it (gemma.seed).
      seed: pick(r.seed, undefined),
    };
  }

  /** Not in OpenAI's schema: the token ids and timings, for tests and the curious. */
  #extra(result) {
    return {
      prompt_ids: result.promptIds,
      generated_ids: result.generatedIds,
      prefill_seconds: result.prefillSeconds,
      decode_seconds: result.decodeSeconds,
      device_recoveries: result.deviceRecoveries ?? 0,
      seed: result.seed,
    };
  }

  #usage(result) {
    return {
      prompt_tokens: result.promptTokens,
      completion_tokens: result.completionTokens,
      total_tokens: result.promptTokens + result.completionTokens,
      reused_tokens: result.reusedTokens,
      prefill_tok_s: result.prefillTokS,
      decode_tok_s: result.decodeTokS,
      backend: result.backend,
      threads: result.threads,
    };
  }

  async #create(mode, r = {}) {
    if (this.#unloaded) throw new GemmaWebError("Unsupported", "the engine was unloaded");
    const request = this.#request(mode, r);
    const id = `${mode === "chat" ? "chatcmpl" : "cmpl"}-${++completionCounter}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: this.model };
    const signal = r.signal;
    if (signal?.aborted) throw new GemmaWebError("Aborted", "aborted before generating");
    // The worker's id of this call, so that an interrupt reaches this generation and no other.
    const callId = this.#link.newId();
    const onAbort = () => this.#link.interrupt(callId);
    this.#pending.push(callId);
    const ended = () => {
      const at = this.#pending.indexOf(callId);
      if (at >= 0) this.#pending.splice(at, 1);
    };

    const run = (onPiece) =>
      this.#serial(async () => {
        signal?.addEventListener("abort", onAbort, { once: true });
        try {
          if (signal?.aborted) throw new GemmaWebError("Aborted", "aborted before generating");
          let deviceRecoveries = 0;
          const result = await this.#link.call("generate", { request }, (msg) => {
            if (msg.type === "piece") onPiece(msg.text);
            else if (msg.type === "deviceLost") {
              this.dispatchEvent(new CustomEvent("devicelost", { detail: { message: msg.message } }));
            } else if (msg.type === "recovered") {
              deviceRecoveries++;
              this.dispatchEvent(new CustomEvent("recovered", { detail: { seconds: msg.seconds } }));
            }
          }, callId);
          result.deviceRecoveries = deviceRecoveries;
          if (signal?.aborted) throw new GemmaWebError("Aborted", "generation aborted");
          return result;
        } finally {
          ended();
          signal?.removeEventListener("abort", onAbort);
        }
      });

    if (!r.stream) {
      const result = await run(() => {});
      const choice = mode === "chat"
        ? { index: 0, message: { role: "assistant", content: result.text }, finish_reason: result.finishReason }
        : { index: 0, text: result.text, finish_reason: result.finishReason };
      return {
        ...base,
        object: mode === "chat" ? "chat.completion" : "text_completion",
        choices: [choice],
        usage: this.#usage(result),
        gemma: this.#extra(result),
      };
    }

    const object = mode === "chat" ? "chat.completion.chunk" : "text_completion";
    const queue = chunkQueue();
    let first = true;
    run((text) => {
      const choice = mode === "chat"
        ? { index: 0, delta: first ? { role: "assistant", content: text } : { content: text }, finish_reason: null }
        : { index: 0, text, finish_reason: null };
      first = false;
      queue.push({ ...base, object, choices: [choice] });
    }).then(
      (result) => {
        const choice = mode === "chat"
          ? { index: 0, delta: {}, finish_reason: result.finishReason }
          : { index: 0, text: "", finish_reason: result.finishReason };
        queue.push({ ...base, object, choices: [choice], usage: this.#usage(result), gemma: this.#extra(result) });
        queue.close();
      },
      (error) => queue.close(error),
    );
    return queue;
  }
}
