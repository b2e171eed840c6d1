// The model store: one file per model in the Origin Private File System plus a sidecar manifest.
// Runs in a dedicated worker only (OPFS sync access handles exist nowhere else). This file moves
// bytes; the wasm `StoreDownload` (crate/src/storage.rs) decides what to fetch, hashes the bytes as
// they arrive and says when a model is complete.
//
//   ensureModel(url, { sha256, onProgress, signal, verify }) -> { id, url, size, sha256, fetchedBytes, fromStorage }
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

/** Progress reporter: bytes done/total and MB/s over the last few seconds. */
function progress(onProgress, phase, total) {
  const t0 = performance.now();
  const marks = [[t0, 0]];
  let last = 0;
  return (done, fetched, force) => {
    if (!onProgress) return;
    const now = performance.now();
    if (!force && now - last < 100) return;
    last = now;
    marks.push([now, fetched]);
    while (marks.length > 2 && now - marks[0][0] > 3000) marks.shift();
    const [t, b] = marks[0];
    const mbPerS = now > t ? (fetched - b) / 1e6 / ((now - t) / 1000) : 0;
    onProgress({ phase, bytesDone: done, bytesTotal: total, bytesFetched: fetched, mbPerS });
  };
}

/**
 * Makes the model at `url` complete and verified in storage, downloading only what is missing.
 * Another tab downloading the same model holds its lock: this one waits, then uses the finished file.
 */
export async function ensureModel(url, { sha256, onProgress, signal, chunkBytes = CHUNK_BYTES, verify } = {}) {
  await wasm();
  const abs = new URL(url, self.location.href).href;
  const id = modelId(abs);
  const want = sha256 ? String(sha256).toLowerCase() : undefined;
  try {
    signal?.throwIfAborted();
    // A catalog hash was checked when the download completed; without one, the hash recorded then
    // is checked on every load.
    const check = verify ?? !want;
    const run = () => ensureLocked(abs, id, want, check, onProgress, signal, chunkBytes);
    if (!navigator.locks) return await run();
    return await navigator.locks.request(lockName(id), signal ? { signal } : {}, run);
  } catch (e) {
    throw coded(e, signal);
  }
}

async function ensureLocked(url, id, sha256, verify, onProgress, signal, chunkBytes) {
  const dir = await modelsDir();
  const stored = await readManifest(dir, id);
  if (stored && manifestUsable(stored, sha256)) {
    const manifest = JSON.parse(stored);
    if (verify) await verifyStored(dir, id, stored, onProgress, signal);
    return { id, url, size: manifest.size, sha256: manifest.sha256, fetchedBytes: 0, fromStorage: true };
  }
  return download(dir, url, id, stored, sha256, onProgress, signal, chunkBytes);
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

async function download(dir, url, id, stored, sha256, onProgress, signal, chunkBytes) {
  const head = await fetch(url, { method: "HEAD", cache: "no-store", signal });
  if (!head.ok) throw storeError("Network", `${url}: HTTP ${head.status} ${head.statusText}`);
  const size = Number(head.headers.get("content-length"));
  if (!Number.isSafeInteger(size) || size < 0) {
    throw storeError("Network", `${url}: the server sent no usable Content-Length`);
  }
  const etag = head.headers.get("etag") ?? undefined;
  let plan = new StoreDownload(url, stored, size, etag, sha256, chunkBytes);

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
  let fetched = 0;
  let unsaved = 0;
  let deleted = false;
  const report = progress(onProgress, "downloading", size);
  const save = async () => {
    h.flush();
    await writeManifest(dir, id, plan.manifest);
    unsaved = 0;
  };
  try {
    // From here on the manifest says "partial" until the hash matched.
    await writeManifest(dir, id, plan.manifest);
    for (;;) {
      const step = await rehashAll(plan, h, () => {}, signal);
      if (step.kind === "finish") break;
      // step.kind === "fetch"
      const end = step.offset + step.length; // exclusive
      const res = await fetch(url, {
        headers: { Range: `bytes=${step.offset}-${end - 1}`, ...(etag ? { "If-Range": etag } : {}) },
        cache: "no-store",
        signal,
      });
      if (res.status === 200) {
        // If-Range did not hold: the file changed on the server. Forget the stored bytes.
        await res.body?.cancel();
        plan = new StoreDownload(url, null, size, undefined, sha256, chunkBytes);
        throw storeError("Network", `${url} changed on the server during the download; load it again to start over`);
      }
      if (res.status !== 206) throw storeError("Network", `${url}: HTTP ${res.status} for bytes ${step.offset}-${end - 1}`);
      const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
      if (!cr || Number(cr[1]) !== step.offset || Number(cr[2]) !== end - 1 || Number(cr[3]) !== size) {
        await res.body?.cancel();
        throw storeError("Network", `${url}: unexpected Content-Range ${res.headers.get("content-range")}`);
      }
      const reader = res.body.getReader();
      let at = step.offset;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (at + value.length > end) throw storeError("Network", `${url}: more bytes than requested`);
        const n = h.write(value, { at });
        if (n !== value.length) throw storeError("Io", `short write to storage (${n} of ${value.length} bytes)`);
        plan.received(at, value);
        at += value.length;
        fetched += value.length;
        unsaved += value.length;
        if (unsaved >= SAVE_EVERY) await save();
        report(plan.bytesStored, fetched);
      }
      if (at !== end) throw storeError("Network", `${url}: the connection closed at byte ${at} of ${end}`);
      await save();
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
