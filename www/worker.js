// The engine's dedicated worker (module type): it owns the wasm module and the GPU device, so the page stays
// responsive while a model loads or generates. www/gemma-web.js starts it and is the only code that talks to it.
//
// Messages from the page, each with an `id` the answers repeat (ids grow: a later call has a larger one):
//   { type: "load", id, source, options }   source: { kind: "url", url, fetchUrl?, sha256?, size?, revision?, store? }
//                                           | { kind: "file", file: Blob }
//                                           (a URL goes through the OPFS weight store unless store is false)
//   { type: "generate", id, request }       request: the wasm GenerateRequest (messages or prompt, sampling);
//                                           one at a time (the page queues them)
//   { type: "interrupt", id }               stops the generate call `id` after its current token or prefill block,
//                                           or as soon as it starts if it has not yet; nothing when it has ended.
//                                           Not answered. Without an id: whatever generates now (unload)
//   { type: "loseDevice" }                  destroys the GPU device, as a driver reset would (tests of recovery)
//   { type: "reset" | "unload" | "info" | "capabilities", id }
//   { type: "tokenize", id, text, addBos }  answered at once, also while a generation runs
//   { type: "listStored", id } | { type: "deleteStored", id, modelId }   the weight store's models
// Answers:
//   { type: "progress", id, loaded, total }  tensor bytes on the GPU so far (load)
//   { type: "fetched", id, bytes }           bytes that crossed the network so far (URL without the store)
//   { type: "download", id, phase, bytesDone, bytesTotal, bytesFetched, mbPerS }   the store's download/verify
//   { type: "piece", id, text, tokenId }     streamed text (generate)
//   { type: "deviceLost", id, message }      the GPU device was lost during this call; the model is being reloaded
//   { type: "recovered", id, seconds }       the model is on a new device again and the call goes on
//   { type: "done", id, value }              the call's result
//   { type: "error", id, error: { code, message } }

import { deleteModel, ensureReader, listModels } from "./store.js";
import { loadWasm } from "./wasm-loader.js";

/** The wasm package's engine class: ./pkg, or ./pkg-threads for a CPU engine on several threads (wasm-loader.js). */
let WebEngine = null;

/** Bytes per HTTP Range request; the loader reads 4 MiB slices, served from this read-ahead. */
const HTTP_CHUNK = 16 << 20;

let engine = null;
/** What the engine was loaded from, so it can be loaded again on a new device after a device loss. */
let loadedFrom = null;
/** While the model is reloaded after a device loss there is no engine: a promise of the reload's end. */
let recovery = null;
/** The generate call running now (its id), the last one started, and interrupts of calls not started yet. */
let running = null;
let lastStarted = 0;
const interruptsAhead = new Set();
/** An interrupt of the running call that came while there was no engine to pass it to (a reload). */
let interruptedWhileRecovering = false;

/** Stops the generate call `id` (the running one when `id` is undefined); a call that has ended is left alone. */
function interrupt(id) {
  id ??= running;
  if (id === null) return;
  if (id === running) {
    if (recovery) interruptedWhileRecovering = true;
    else engine?.interrupt();
  } else if (id > lastStarted) {
    interruptsAhead.add(id);
  }
}

function codedError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

/**
 * A ByteReader over HTTP Range requests. The first request learns the size and the ETag; later ones carry
 * If-Range, so a file replaced on the server mid-load answers 200 and fails the load instead of mixing bytes.
 */
async function httpReader(url, onFetched) {
  let fetched = 0;
  let etag = null;
  let cache = { start: 0, bytes: new Uint8Array(0) };

  async function get(start, end) {
    const headers = { Range: `bytes=${start}-${end - 1}` };
    // If-Range only to this page's own server: elsewhere it is not CORS-safelisted, and a CDN refuses its preflight.
    if (etag && new URL(url, self.location.href).origin === self.location.origin) headers["If-Range"] = etag;
    let res;
    try {
      res = await fetch(url, { headers, cache: "no-store" });
    } catch (e) {
      throw codedError("Network", `could not fetch ${url}: ${e.message}`);
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      const why = res.status === 200 && etag ? "the file changed on the server during the load" : `HTTP ${res.status}`;
      throw codedError("Network", `${url}: expected 206 Partial Content, got ${why}`);
    }
    const total = Number((res.headers.get("Content-Range") || "").split("/")[1]);
    if (!Number.isSafeInteger(total)) throw codedError("Network", `${url}: no usable Content-Range header`);
    etag = etag || res.headers.get("ETag");
    let bytes;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw codedError("Network", `${url}: the download broke off: ${e.message}`);
    }
    fetched += bytes.length;
    onFetched(fetched);
    return { bytes, total };
  }

  const first = await get(0, Math.min(HTTP_CHUNK, 1 << 20));
  const size = first.total;
  cache = { start: 0, bytes: first.bytes };
  return {
    size,
    async read(offset, length) {
      const end = offset + length;
      if (end > size) throw codedError("BadModel", `read past the end of ${url}`);
      if (offset < cache.start || end > cache.start + cache.bytes.length) {
        const want = Math.min(size, Math.max(end, offset + HTTP_CHUNK));
        const part = await get(offset, want);
        if (part.bytes.length !== want - offset) {
          throw codedError("Network", `${url}: asked for ${want - offset} bytes, got ${part.bytes.length}`);
        }
        cache = { start: offset, bytes: part.bytes };
      }
      // A copy: the wasm side copies it into its own slice anyway, and the cache stays intact.
      return cache.bytes.slice(offset - cache.start, end - cache.start);
    },
  };
}

/** A ByteReader over a File or Blob the user picked: Blob.slice reads, nothing held beyond one slice. */
function blobReader(blob) {
  return {
    size: blob.size,
    async read(offset, length) {
      try {
        return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      } catch (e) {
        throw codedError("Io", `could not read the file: ${e.message}`);
      }
    },
  };
}

/**
 * Where a model's bytes come from: a URL is downloaded into the OPFS weight store (resumable, verified; only missing
 * ranges are fetched, nothing when it is already stored) and read from there; `store: false` reads it with Range
 * requests straight to the GPU instead.
 */
async function openReader(source, post) {
  switch (source?.kind) {
    case "url":
      if (source.store === false) {
        return httpReader(source.fetchUrl ?? source.url, (bytes) => post({ type: "fetched", bytes }));
      }
      return ensureReader(source.url, {
        sha256: source.sha256,
        size: source.size,
        revision: source.revision,
        fetchUrl: source.fetchUrl,
        onProgress: (p) => post({ type: "download", ...p }),
      });
    case "file":
      return blobReader(source.file);
    default:
      throw codedError("Unsupported", `unknown model source ${JSON.stringify(source?.kind)}`);
  }
}

function dropEngine() {
  if (engine) {
    engine.unload();
    engine.free();
    engine = null;
  }
}

/** Streams the model from `source` to the GPU; resolves with the reader (its `model` says what the store did). */
async function loadEngine(source, options, post) {
  const reader = await openReader(source, post);
  try {
    engine = await WebEngine.load(reader, options, (loaded, total) => post({ type: "progress", loaded, total }));
  } finally {
    // The weights are on the GPU (or the load failed): release the stored file.
    reader.close?.();
  }
  return reader;
}

/**
 * Generates; when the GPU device is lost on the way (a driver reset, the GPU process crashing, the OS taking the GPU
 * back), the old device's objects are dropped, the model is loaded again on a new device (from browser storage, so
 * no network for a stored model), and the answer goes on from the token where it stopped, with the whole
 * conversation back in the KV cache. One recovery per call; a second loss is a DeviceLost error.
 */
async function generate(id, request, post) {
  running = id;
  lastStarted = id;
  const interruptedEarly = interruptsAhead.has(id);
  for (const early of interruptsAhead) if (early <= id) interruptsAhead.delete(early);
  try {
    return await generateRecovering(request, interruptedEarly, post);
  } finally {
    running = null;
  }
}

async function generateRecovering(request, interruptedEarly, post) {
  const onPiece = (text, tokenId) => post({ type: "piece", text, tokenId });
  try {
    const result = needEngine().generate(request, onPiece);
    // The engine took the call synchronously: the interrupt applies to it (stopping it in its prefill).
    if (interruptedEarly) engine.interrupt();
    return await result;
  } catch (e) {
    if (e?.code !== "DeviceLost" || !loadedFrom) throw e;
    post({ type: "deviceLost", message: e.message });
    const t0 = performance.now();
    dropEngine();
    interruptedWhileRecovering = false;
    recovery = loadEngine(loadedFrom.source, loadedFrom.options, post);
    try {
      await recovery;
    } catch (again) {
      throw codedError(again?.code || "DeviceLost",
        `the GPU device was lost (${e.message}) and loading the model again failed: ${again?.message ?? again}`);
    } finally {
      recovery = null;
    }
    post({ type: "recovered", seconds: (performance.now() - t0) / 1000 });
    const resumeIds = Array.from(e.generatedIds ?? []);
    try {
      // The seed the lost call drew, so that the answer reports one seed.
      const again = { ...request, seed: e.seed ?? request.seed };
      const resumed = engine.generate(resumeIds.length ? { ...again, resumeIds } : again, onPiece);
      // A stop pressed during the reload: the conversation is restored, and the answer ends after one more token.
      if (interruptedWhileRecovering) engine.interrupt();
      return await resumed;
    } catch (again) {
      if (again?.code !== "DeviceLost") throw again;
      throw codedError("DeviceLost",
        `the GPU device was lost again right after recovering (${again.message}); reload the page, or close other GPU-heavy tabs first`);
    }
  }
}

function errorOf(e) {
  return { code: (e && e.code) || "Unsupported", message: (e && e.message) || String(e) };
}

/** Why the loaded CPU engine runs on fewer threads than its load asked for (wasm-loader.js), or null. */
let threadsReason = null;

/** The engine's info, with what only this worker knows: why a CPU engine got fewer threads than it asked for. */
function infoOf(e) {
  const info = e.info();
  info.threadsReason = info.backend === "cpu" ? threadsReason : null;
  return info;
}

function needEngine() {
  if (!engine) throw codedError("Unsupported", "no model is loaded");
  return engine;
}

async function handle(msg, post) {
  switch (msg.type) {
    case "capabilities":
      return WebEngine.capabilities();
    case "load": {
      dropEngine();
      const reader = await loadEngine(msg.source, msg.options ?? {}, post);
      loadedFrom = { source: msg.source, options: msg.options ?? {} };
      const info = infoOf(engine);
      info.stored = reader.model ?? null;
      return info;
    }
    case "info":
      return infoOf(needEngine());
    case "generate":
      return generate(msg.id, msg.request, post);
    case "tokenize":
      // During a generation too (the engine keeps its tokenizer apart from the model); after a reload's end.
      await recovery?.catch(() => {});
      return Array.from(needEngine().tokenize(msg.text, msg.addBos !== false));
    case "listStored":
      return listModels();
    case "deleteStored":
      await deleteModel(msg.modelId);
      return null;
    case "reset":
      needEngine().reset();
      return null;
    case "unload":
      dropEngine();
      loadedFrom = null;
      return null;
    default:
      throw codedError("Unsupported", `unknown message type ${JSON.stringify(msg.type)}`);
  }
}

self.onmessage = async (event) => {
  const msg = event.data;
  // Not queued behind the generation it stops.
  if (msg.type === "interrupt") {
    interrupt(msg.id);
    return;
  }
  if (msg.type === "loseDevice") {
    engine?.simulateDeviceLoss();
    return;
  }
  const post = (m) => self.postMessage({ ...m, id: msg.id });
  try {
    // A load picks the package for the threads it asks for; other messages use the one there is.
    if (msg.type === "load" || !WebEngine) {
      const wasm = await loadWasm({ threads: msg.type === "load" ? msg.options?.threads : undefined });
      WebEngine = wasm.module.WebEngine;
      if (msg.type === "load") threadsReason = wasm.fallback;
    }
    const value = await handle(msg, post);
    post({ type: "done", value });
  } catch (e) {
    post({ type: "error", error: errorOf(e) });
  }
};
