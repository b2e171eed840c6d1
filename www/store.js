// The model store: one file per model in the Origin Private File System plus a sidecar manifest.
// Runs in a dedicated worker only (OPFS sync access handles exist nowhere else). This file moves
// bytes; the wasm `StoreDownload` (crate/src/storage.rs) decides what to fetch, hashes the bytes as
// they arrive and says when a model is complete.
//
//   ensureModel(url, { sha256, size, revision, fetchUrl, onProgress, signal, verify, retries })
//     -> { id, url, size, sha256, fetchedBytes, fromStorage }
//   openModel(id) -> { id, handle, size, close() }  (handle: FileSystemSyncAccessHandle, read-only use;
//                                                    wasm `new OpfsFile(handle)` is a loader ByteSource)
//   storedReader(id), ensureReader(url, options) -> { size, read(offset, length), close() }  (the engine's ByteReader)
//   listModels() -> [{ id, url, size, storedBytes, fileBytes, state, sha256, usable }]
//   deleteModel(id)
// Errors are `Error`s with a stable `code` (Quota, Integrity, Network, Aborted, Io, ...).

import init, { StoreDownload, checkQuota, modelId, manifestUsable } from "./pkg/gemma_web.js";

const DIR = "gemma-web-models";
/** Bytes per Range request. */
export const CHUNK_BYTES = 16 << 20;
/** The manifest is saved after about this many new bytes, so a closed tab loses little. */
const SAVE_EVERY = 2 << 20;
/** Failed attempts in a row (no byte arriving in between) before a download gives up. */
export const RETRIES = 6;
/** The longest wait before a retry, in seconds, whatever Retry-After says. */
const MAX_WAIT_S = 60;

export function storeError(code, message, cause) {
  const e = new Error(message, cause ? { cause } : undefined);
  e.code = code;
  return e;
}

/** Gives an exception a `code`: wasm errors have one; DOM and fetch errors are mapped. */
function coded(e, signal) {
  if (e && typeof e.code === "string" && /^[A-Z]/.test(e.code)) return e;
  if (signal?.aborted || e?.name === "AbortError") return storeError("Aborted", "aborted", e);
  if (e?.name === "QuotaExceededError") return storeError("Quota", `storage is full: ${e.message}`, e);
  if (e instanceof TypeError) return storeError("Network", `download failed: ${e.message}`, e);
  return storeError("Io", `model storage: ${e?.name ?? ""} ${e?.message ?? e}`, e);
}

let ready;
function wasm() {
  ready ??= init();
  return ready;
}

async function modelsDir() {
  if (!navigator.storage?.getDirectory) {
    throw storeError("Unsupported", "this browser has no Origin Private File System (navigator.storage.getDirectory)");
  }
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(DIR, { create: true });
}

async function fileIfExists(dir, name) {
  try {
    return await dir.getFileHandle(name);
  } catch (e) {
    if (e?.name === "NotFoundError") return null;
    throw e;
  }
}

/** A sync access handle; a tab that just closed may still hold one for a moment, so retry briefly. */
async function syncHandle(fileHandle, mode) {
  for (let i = 0; ; i++) {
    try {
      if (mode) {
        try {
          return await fileHandle.createSyncAccessHandle({ mode });
        } catch (e) {
          if (e?.name !== "TypeError") throw e; // an older browser without modes
        }
      }
      return await fileHandle.createSyncAccessHandle();
    } catch (e) {
      if (e?.name !== "NoModificationAllowedError" || i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function readText(dir, name) {
  const fh = await fileIfExists(dir, name);
  return fh ? (await fh.getFile()).text() : null;
}

function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * The manifest's text, or null. A manifest torn by a crash in the middle of `writeManifest` does not parse (a JSON
 * object cut short never does); the journal beside it then holds the complete new text.
 */
async function readManifest(dir, id) {
  const text = await readText(dir, `${id}.json`);
  if (text && isJson(text)) return text;
  const journal = await readText(dir, `${id}.json.new`);
  if (journal && isJson(journal)) return journal;
  return text || null;
}

async function writeFile(dir, name, text) {
  const fh = await dir.getFileHandle(name, { create: true });
  const h = await syncHandle(fh);
  try {
    const bytes = new TextEncoder().encode(text);
    h.truncate(0);
    h.write(bytes, { at: 0 });
    h.flush();
  } finally {
    h.close();
  }
}

/**
 * Saves a manifest so that a tab closed or crashing at any moment leaves one that reads whole: the text goes to a
 * journal first, then over the manifest, then the journal goes. Whichever write is cut short, the other file holds a
 * complete manifest (the old one or the new one), so a download is never thrown away for a torn manifest.
 */
async function writeManifest(dir, id, json) {
  await writeFile(dir, `${id}.json.new`, json);
  await writeFile(dir, `${id}.json`, json);
  await removeEntry(dir, `${id}.json.new`);
}

async function removeEntry(dir, name) {
  try {
    await dir.removeEntry(name);
  } catch (e) {
    if (e?.name !== "NotFoundError") throw e;
  }
}

function lockName(id) {
  return `gemma-web-model:${id}`;
}

/**
 * Progress reporter: bytes done/total and MB/s over the last few seconds. At most one event per 100 ms; an update that
 * comes sooner is not dropped but sent when the 100 ms are up, so the last state before a stall (a connection that
 * hangs after a burst) is always shown.
 */
function progress(onProgress, phase, total) {
  const t0 = performance.now();
  const marks = [[t0, 0]];
  let last = -Infinity;
  let pending = null; // [done, fetched] not sent yet
  let timer = null;
  const send = (done, fetched) => {
    const now = performance.now();
    last = now;
    marks.push([now, fetched]);
    while (marks.length > 2 && now - marks[0][0] > 3000) marks.shift();
    const [t, b] = marks[0];
    const mbPerS = now > t ? (fetched - b) / 1e6 / ((now - t) / 1000) : 0;
    onProgress({ phase, bytesDone: done, bytesTotal: total, bytesFetched: fetched, mbPerS });
  };
  const report = (done, fetched, force) => {
    if (!onProgress) return;
    const wait = last + 100 - performance.now();
    if (force || wait <= 0) {
      pending = null;
      clearTimeout(timer);
      timer = null;
      send(done, fetched);
      return;
    }
    pending = [done, fetched];
    timer ??= setTimeout(() => {
      timer = null;
      if (pending) send(...pending);
      pending = null;
    }, wait);
  };
  /** Drops an update not sent yet (the operation failed: nothing may follow its error). */
  report.cancel = () => {
    clearTimeout(timer);
    timer = null;
    pending = null;
  };
  return report;
}

/**
 * Makes the model at `url` complete and verified in storage, downloading only what is missing.
 * Another tab downloading the same model holds its lock: this one waits, then uses the finished file.
 *
 * `url` names the model in storage; `fetchUrl` (default `url`) is what is requested, e.g. a hub's `/resolve/` URL at
 * a pinned commit (`revision`). `size` and `sha256`, when the catalog or a hub's API gave them, are known before the
 * first byte, and a cross-origin download then needs no request but its Range reads. Transient failures (a dropped
 * connection, 429, 5xx) are retried up to `retries` times in a row with a bounded back-off, shown as a "waiting"
 * progress event.
 */
export async function ensureModel(url, {
  sha256, size, revision, fetchUrl, onProgress, signal, chunkBytes = CHUNK_BYTES, verify, retries = RETRIES,
} = {}) {
  await wasm();
  const abs = new URL(url, self.location.href).href;
  const id = modelId(abs);
  const want = sha256 ? String(sha256).toLowerCase() : undefined;
  const src = {
    url: abs,
    fetchUrl: new URL(fetchUrl ?? url, self.location.href).href,
    size: Number.isSafeInteger(size) && size >= 0 ? size : undefined,
    revision: revision || undefined,
  };
  try {
    signal?.throwIfAborted();
    const run = () => ensureLocked(src, id, want, verify, onProgress, signal, chunkBytes, retries);
    if (!navigator.locks) return await run();
    return await navigator.locks.request(lockName(id), signal ? { signal } : {}, run);
  } catch (e) {
    throw coded(e, signal);
  }
}

async function ensureLocked(src, id, sha256, verify, onProgress, signal, chunkBytes, retries) {
  const dir = await modelsDir();
  let stored = await readManifest(dir, id);
  if (stored && manifestUsable(stored, sha256)) {
    const manifest = JSON.parse(stored);
    // Hash once: a model whose hash matched an expected one (the catalog's or the hub's) when it was downloaded is
    // trusted (its size is checked); one whose hash was only recorded then is hashed again on every load.
    const trusted = Boolean(sha256 || manifest.expectedSha256);
    const result = { id, url: src.url, size: manifest.size, sha256: manifest.sha256, fetchedBytes: 0, fromStorage: true };
    if (verify ?? !trusted) {
      await verifyStored(dir, id, stored, onProgress, signal);
      return result;
    }
    const fh = await fileIfExists(dir, `${id}.gguf`);
    if (fh && (await fh.getFile()).size === manifest.size) return result;
    // Storage lost the file or changed its length behind our back: it is not the model any more.
    await deleteLocked(dir, id);
    stored = null;
  }
  return download(dir, src, id, stored, sha256, onProgress, signal, chunkBytes, retries);
}

/** Hashes a stored model again; a mismatch deletes it (it is not the model any more). */
async function verifyStored(dir, id, manifestJson, onProgress, signal) {
  const plan = StoreDownload.verifyStored(manifestJson);
  const fh = await fileIfExists(dir, `${id}.gguf`);
  if (!fh) {
    await deleteLocked(dir, id);
    throw storeError("Integrity", `the stored model ${id} has a manifest but no file; it was removed`);
  }
  const h = await syncHandle(fh, "read-only");
  const report = progress(onProgress, "verifying", plan.size);
  try {
    await rehashAll(plan, h, report, signal);
    plan.finish();
    report(plan.size, 0, true);
  } catch (e) {
    report.cancel();
    h.close();
    if (e?.code === "Integrity") await deleteLocked(dir, id);
    throw e;
  }
  h.close();
}

async function rehashAll(plan, h, report, signal) {
  for (let i = 1; ; i++) {
    const step = plan.nextStep();
    if (step.kind !== "rehash") return step;
    signal?.throwIfAborted();
    const buf = new Uint8Array(step.length);
    const n = h.read(buf, { at: step.offset });
    if (n !== step.length) {
      throw storeError("Io", `stored model is shorter than its manifest (read ${n} of ${step.length} bytes at ${step.offset})`);
    }
    plan.rehashed(step.offset, buf);
    report(plan.bytesHashed, 0);
    // Let an abort or other messages in now and then.
    if (i % 16 === 0) await new Promise((r) => setTimeout(r, 0));
  }
}

/** Waits out a transient failure, or gives up after too many in a row. */
function retrier(retries, signal, onWait) {
  let failures = 0;
  return {
    progress() {
      failures = 0;
    },
    async wait(reason, retryAfter) {
      failures += 1;
      if (failures > retries) {
        throw storeError("Network", `${reason} (gave up after ${failures} attempts in a row)`);
      }
      const backoff = Math.min(MAX_WAIT_S, 2 ** (failures - 1));
      const seconds = Math.min(MAX_WAIT_S, Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : backoff);
      onWait({ reason, retryInSeconds: seconds, attempt: failures });
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, seconds * 1000);
        signal?.addEventListener("abort", () => {
          clearTimeout(t);
          reject(storeError("Aborted", "aborted"));
        }, { once: true });
      });
    },
  };
}

/** Retry-After in seconds (a number or an HTTP date), where the server let this page read it. */
function retryAfter(res) {
  const v = res.headers.get("retry-after");
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, (t - Date.now()) / 1000) : undefined;
}

const transient = (status) => status === 408 || status === 429 || status >= 500;

/** `bytes a-b/total` of a 206, or null (missing or unreadable: a cross-origin server must expose it). */
function contentRange(res) {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec((res.headers.get("content-range") ?? "").trim());
  return m ? { first: Number(m[1]), last: Number(m[2]), total: Number(m[3]) } : null;
}

function noContentRange(url) {
  return storeError("Network", `${url}: a 206 without a readable Content-Range; a server on another origin must send ` +
    "Access-Control-Expose-Headers: Content-Range (and Access-Control-Allow-Origin)");
}

/**
 * The size (and, from a same-origin server, the ETag) when nothing gave them: a HEAD to this page's own server, a
 * `Range: bytes=0-0` probe elsewhere (it also shows whether the server honours ranges).
 */
async function probe(src, sameOrigin, tries, signal) {
  const url = src.fetchUrl;
  for (;;) {
    let res;
    try {
      res = sameOrigin
        ? await fetch(url, { method: "HEAD", cache: "no-store", signal })
        : await fetch(url, { headers: { Range: "bytes=0-0" }, cache: "no-store", signal });
    } catch (e) {
      if (signal?.aborted) throw e;
      await tries.wait(`could not reach ${new URL(url).host}: ${e.message}`);
      continue;
    }
    if (transient(res.status)) {
      await res.body?.cancel();
      await tries.wait(`${new URL(url).host} answered HTTP ${res.status}`, retryAfter(res));
      continue;
    }
    if (res.status === 206) {
      await res.body?.cancel();
      const cr = contentRange(res);
      if (!cr) throw noContentRange(url);
      return { size: cr.total, etag: undefined, signedUrl: res.url };
    }
    if (!res.ok) throw storeError("Network", `${url}: HTTP ${res.status} ${res.statusText}`);
    await res.body?.cancel();
    const size = Number(res.headers.get("content-length"));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw storeError("Network", `${url}: the server sent no usable Content-Length`);
    }
    const tag = sameOrigin ? res.headers.get("etag") : null;
    // Only a strong ETag identifies the bytes (and may go in If-Range); a weak one never matches there.
    return { size, etag: tag && !tag.startsWith("W/") ? tag : undefined, signedUrl: undefined };
  }
}

async function download(dir, src, id, stored, sha256, onProgress, signal, chunkBytes, retries) {
  const url = src.url;
  const host = new URL(src.fetchUrl).host;
  const sameOrigin = new URL(src.fetchUrl).origin === self.location.origin;
  let fetched = 0;
  let bytesDone = 0;
  let size = src.size;
  const tries = retrier(retries, signal, (wait) => {
    onProgress?.({ phase: "waiting", bytesDone, bytesTotal: size ?? 0, bytesFetched: fetched, mbPerS: 0, ...wait });
  });
  // The URL the bytes come from: a hub's redirect target (a signed CDN URL) is reused while it works.
  let target = src.fetchUrl;
  let etag;
  if (sameOrigin || size === undefined) {
    const remote = await probe(src, sameOrigin, tries, signal);
    if (size !== undefined && remote.size !== size) {
      throw storeError("Integrity", `${src.fetchUrl} is ${remote.size} bytes, but ${size} were expected: not this model`);
    }
    size = remote.size;
    etag = remote.etag;
    if (remote.signedUrl) target = remote.signedUrl;
  }
  const newPlan = (manifest) => new StoreDownload(url, manifest, size, etag, src.revision, sha256, chunkBytes);
  let plan = newPlan(stored);

  // Before anything is written: does the rest fit? Bytes about to be discarded count as free.
  let freed = 0;
  const existing = await fileIfExists(dir, `${id}.gguf`);
  if (existing && plan.discard !== undefined) freed = (await existing.getFile()).size;
  let usage = 0;
  let quota = Infinity;
  if (navigator.storage?.estimate) {
    ({ usage = 0, quota = Infinity } = await navigator.storage.estimate());
    checkQuota(plan.bytesToFetch, Math.max(0, usage - freed), quota);
  }
  // Ask the browser not to evict the model under storage pressure (it may say no; that is fine).
  try {
    await navigator.storage?.persist?.();
  } catch {}

  const fh = await dir.getFileHandle(`${id}.gguf`, { create: true });
  const h = await syncHandle(fh);
  // Chromium's estimate() may report a fixed quota (against fingerprinting), so the space is also
  // reserved up front: the file takes its full length now, or the download stops before it starts.
  try {
    if (plan.discard !== undefined) h.truncate(0);
    if (h.getSize() < size) h.truncate(size);
  } catch (e) {
    h.close();
    if (!stored) await removeEntry(dir, `${id}.gguf`);
    if (e?.name === "QuotaExceededError") {
      throw storeError(
        "Quota",
        `the model needs ${plan.bytesToFetch} more bytes but the browser refused to reserve them ` +
          `(${Math.max(0, quota - usage)} bytes free by its estimate: quota ${quota}, used ${usage})`,
        e,
      );
    }
    throw e;
  }
  let unsaved = 0;
  let deleted = false;
  const report = progress(onProgress, "downloading", size);
  const save = async () => {
    h.flush();
    await writeManifest(dir, id, plan.manifest);
    unsaved = 0;
  };
  /** Writes a response body at `from`, up to `limit`; false when the connection broke (what arrived is kept). */
  const receive = async (res, from, limit) => {
    const reader = res.body.getReader();
    let at = from;
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (signal?.aborted) throw e;
          return { at, broke: `the connection to ${host} broke at byte ${at}: ${e.message}` };
        }
        const { done, value } = chunk;
        if (done) break;
        if (at + value.length > limit) {
          await reader.cancel().catch(() => {});
          throw storeError("Network", `${host}: more bytes than requested`);
        }
        const n = h.write(value, { at });
        if (n !== value.length) throw storeError("Io", `short write to storage (${n} of ${value.length} bytes)`);
        plan.received(at, value);
        at += value.length;
        fetched += value.length;
        unsaved += value.length;
        bytesDone = plan.bytesStored;
        tries.progress();
        if (unsaved >= SAVE_EVERY) await save();
        report(plan.bytesStored, fetched);
      }
    } finally {
      reader.releaseLock?.();
    }
    return { at, broke: at === limit ? null : `the connection to ${host} closed at byte ${at} of ${limit}` };
  };
  // Whole-file answers to Range requests so far (a server that ignores ranges).
  let streams = 0;
  try {
    // From here on the manifest says "partial" until the hash matched.
    await writeManifest(dir, id, plan.manifest);
    for (;;) {
      const step = await rehashAll(plan, h, () => {}, signal);
      if (step.kind === "finish") break;
      // step.kind === "fetch"
      bytesDone = plan.bytesStored;
      const end = step.offset + step.length; // exclusive
      // Only a single Range crosses origins: it is CORS-safelisted, If-Range is not (a CDN refuses its preflight).
      const headers = { Range: `bytes=${step.offset}-${end - 1}` };
      if (etag && sameOrigin) headers["If-Range"] = etag;
      let res;
      try {
        res = await fetch(target, { headers, cache: "no-store", signal });
      } catch (e) {
        if (signal?.aborted) throw e;
        await save();
        // A signed URL that stopped working this way is re-resolved through the original one.
        target = src.fetchUrl;
        await tries.wait(`could not reach ${new URL(target).host}: ${e.message}`);
        continue;
      }
      if ((res.status === 403 || res.status === 401 || res.status === 410) && target !== src.fetchUrl) {
        // The signed URL expired: ask the original URL for a new one.
        await res.body?.cancel();
        target = src.fetchUrl;
        await tries.wait(`the signed download URL expired (HTTP ${res.status})`, 0);
        continue;
      }
      if (transient(res.status)) {
        await res.body?.cancel();
        await save();
        await tries.wait(`${new URL(res.url || target).host} answered HTTP ${res.status}`, retryAfter(res));
        continue;
      }
      if (res.status === 200) {
        if (headers["If-Range"]) {
          // If-Range did not hold: the file changed on the server. Forget the stored bytes.
          await res.body?.cancel();
          plan = newPlan(null);
          throw storeError("Network", `${url} changed on the server during the download; load it again to start over`);
        }
        // The server ignores ranges: the body is the whole file. Nothing can be resumed from such a server, so a
        // download from it starts over as one stream, a bounded number of times.
        if (++streams > 3) {
          await res.body?.cancel();
          throw storeError("Network", `${host} ignores Range requests and the download broke off ${streams - 1} times`);
        }
        if (step.offset > 0 || plan.bytesStored > 0) {
          await res.body?.cancel();
          plan = newPlan(null);
          await save();
          continue;
        }
        const length = res.headers.get("content-length");
        if (length !== null && Number(length) !== size) {
          await res.body?.cancel();
          throw storeError("Integrity", `${src.fetchUrl} is ${length} bytes, but ${size} were expected: not this model`);
        }
        const got = await receive(res, 0, size);
        if (got.broke) {
          plan = newPlan(null);
          await save();
          await tries.wait(`${host} ignores Range requests, so the download starts over: ${got.broke}`);
        }
        continue;
      }
      if (res.status !== 206) {
        const why = res.status === 401 || res.status === 403 ? " (access denied: a private or gated file?)" : "";
        throw storeError("Network", `${src.fetchUrl}: HTTP ${res.status}${why} for bytes ${step.offset}-${end - 1}`);
      }
      const cr = contentRange(res);
      if (!cr) {
        await res.body?.cancel();
        throw noContentRange(src.fetchUrl);
      }
      if (cr.first !== step.offset || cr.last !== end - 1 || cr.total !== size) {
        await res.body?.cancel();
        throw storeError("Network", `${src.fetchUrl}: asked for bytes ${step.offset}-${end - 1} of ${size}, got ` +
          `Content-Range ${res.headers.get("content-range")}`);
      }
      // Reuse where the redirect led (a signed URL), sparing the hub one request per chunk.
      if (res.url) target = res.url;
      const got = await receive(res, step.offset, end);
      await save();
      if (got.broke) await tries.wait(got.broke);
    }
    report(size, fetched, true);
    try {
      plan.finish();
    } catch (e) {
      // Not the model: nothing of it may stay claiming to be usable.
      h.close();
      deleted = true;
      await deleteLocked(dir, id);
      throw e;
    }
    h.flush();
    await writeManifest(dir, id, plan.manifest);
    h.close();
    const manifest = JSON.parse(plan.manifest);
    return { id, url, size, sha256: manifest.sha256, fetchedBytes: fetched, fromStorage: false };
  } catch (e) {
    report.cancel();
    // Keep what safely arrived for the next attempt (unless the model was just deleted).
    if (!deleted) {
      try {
        h.flush();
        await writeManifest(dir, id, plan.manifest);
      } catch {}
    }
    try {
      h.close();
    } catch {}
    throw e;
  }
}

/** Opens a complete stored model for reading (the engine's loader wraps `handle` in an OpfsFile). */
export async function openModel(id) {
  await wasm();
  try {
    const dir = await modelsDir();
    const stored = await readManifest(dir, id);
    if (!stored || !manifestUsable(stored, undefined)) {
      throw storeError("Integrity", `model ${id} is not completely stored`);
    }
    const fh = await dir.getFileHandle(`${id}.gguf`);
    const handle = await syncHandle(fh, "read-only");
    return { id, handle, size: handle.getSize(), close: () => handle.close() };
  } catch (e) {
    throw coded(e);
  }
}

/**
 * A byte reader over a complete stored model, in the shape the engine's loader takes
 * (`{ size, read(offset, length) -> Promise<Uint8Array> }`, see crate/src/web_engine.rs), plus
 * `close()` to release the file once the weights are on the GPU.
 */
export async function storedReader(id) {
  const m = await openModel(id);
  let closed = false;
  return {
    id,
    size: m.size,
    async read(offset, length) {
      if (closed) throw storeError("Io", `stored model ${id} was closed`);
      if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0 && offset + length <= m.size)) {
        throw storeError("BadModel", `read of ${length} bytes at ${offset} past the end of stored model ${id} (${m.size} bytes)`);
      }
      const buf = new Uint8Array(length);
      try {
        let done = 0;
        while (done < length) {
          const n = m.handle.read(buf.subarray(done), { at: offset + done });
          if (n <= 0) throw storeError("Io", `stored model ${id} ended at ${offset + done}`);
          done += n;
        }
      } catch (e) {
        throw coded(e);
      }
      return buf;
    },
    close() {
      if (!closed) m.close();
      closed = true;
    },
  };
}

/** `ensureModel` then `storedReader`: what the worker calls to load a model by URL through the store. */
export async function ensureReader(url, options = {}) {
  const model = await ensureModel(url, options);
  return Object.assign(await storedReader(model.id), { model });
}

/** Every stored model, complete or not. */
export async function listModels() {
  await wasm();
  try {
    const dir = await modelsDir();
    const out = [];
    for await (const [name, entry] of dir.entries()) {
      if (entry.kind !== "file" || !name.endsWith(".json")) continue;
      const id = name.slice(0, -".json".length);
      const text = (await readManifest(dir, id)) ?? "";
      let m = null;
      try {
        m = JSON.parse(text);
      } catch {}
      const file = await fileIfExists(dir, `${id}.gguf`);
      out.push({
        id,
        url: m?.url ?? null,
        size: m?.size ?? null,
        // Bytes the manifest vouches for, and the file's length (which may hold more, unvouched).
        storedBytes: Array.isArray(m?.done) ? m.done.reduce((n, [s, e]) => n + (e - s), 0) : 0,
        fileBytes: file ? (await file.getFile()).size : 0,
        state: m?.state ?? "unreadable",
        sha256: m?.sha256 ?? null,
        usable: Boolean(file) && manifestUsable(text, undefined),
      });
    }
    out.sort((a, b) => a.id.localeCompare(b.id));
    return out;
  } catch (e) {
    throw coded(e);
  }
}

/** Deletes a stored model (waits for a download of it in another tab to stop first). */
export async function deleteModel(id) {
  await wasm();
  try {
    const dir = await modelsDir();
    const run = () => deleteLocked(dir, id);
    return navigator.locks ? await navigator.locks.request(lockName(id), run) : await run();
  } catch (e) {
    throw coded(e);
  }
}

async function deleteLocked(dir, id) {
  // The manifest goes first: a file without one is never treated as a model.
  await removeEntry(dir, `${id}.json.new`);
  await removeEntry(dir, `${id}.json`);
  await removeEntry(dir, `${id}.gguf`);
}
