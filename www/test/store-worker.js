// Test fixture: a dedicated worker that exposes www/store.js to tests/e2e/store.test.mjs by messages
// { id, op, args } -> { id, result } | { id, error: { code, message } }, plus { progress } events.
import { ensureModel, ensureReader, openModel, listModels, deleteModel } from "../store.js";
import { OpfsFile } from "../pkg/gemma_web.js";
import { parseHubRef, resolveHub } from "../hub.js";

let abort = null;

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

const ops = {
  async ensure({ url, sha256, chunkBytes, verify, retries }) {
    abort = new AbortController();
    const onProgress = (p) => postMessage({ progress: p });
    return ensureModel(url, { sha256, chunkBytes, verify, retries, onProgress, signal: abort.signal });
  },
  // A Hugging Face name (hf:org/repo/file.gguf) resolved through the hub at `endpoint`, then stored.
  async ensureHf({ name, endpoint, chunkBytes, retries }) {
    abort = new AbortController();
    const onProgress = (p) => postMessage({ progress: p });
    const d = await resolveHub(parseHubRef(name, endpoint), { signal: abort.signal });
    const { url, fetchUrl, size, sha256, commit: revision } = d;
    const got = await ensureModel(url, { fetchUrl, size, sha256, revision, chunkBytes, retries, onProgress, signal: abort.signal });
    return { ...got, commit: d.commit, license: d.license };
  },
  // Test only: damages one stored byte behind the store's back (a bad disk, a stray write).
  async corrupt({ id, offset }) {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle("gemma-web-models");
    const h = await (await dir.getFileHandle(`${id}.gguf`)).createSyncAccessHandle();
    try {
      const b = new Uint8Array(1);
      h.read(b, { at: offset });
      b[0] ^= 0x01;
      h.write(b, { at: offset });
      h.flush();
    } finally {
      h.close();
    }
  },
  // Test only: the state a crash in the middle of saving a manifest leaves (www/store.js writeManifest): the
  // journal holds the whole text, the manifest only its first half.
  async tearManifest({ id }) {
    const root = await navigator.storage.getDirectory();
    const dir = await root.getDirectoryHandle("gemma-web-models");
    const text = await (await (await dir.getFileHandle(`${id}.json`)).getFile()).text();
    const write = async (name, s) => {
      const h = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
      try {
        h.truncate(0);
        h.write(new TextEncoder().encode(s), { at: 0 });
        h.flush();
      } finally {
        h.close();
      }
    };
    await write(`${id}.json.new`, text);
    await write(`${id}.json`, text.slice(0, text.length >> 1));
  },
  async abort() {
    abort?.abort();
  },
  list: () => listModels(),
  remove: ({ id }) => deleteModel(id),
  // The GGUF header through the engine's loader over the stored file.
  async header({ id }) {
    const m = await openModel(id);
    try {
      const h = await new OpfsFile(m.handle).readHeader();
      return { architecture: h.architecture, layers: h.config.layers, vocab: h.config.vocab, tensors: h.tensors.length };
    } finally {
      m.close();
    }
  },
  // Reads through the Rust byte source (OpfsFile.readAt) and returns the bytes as hex.
  async read({ id, offset, length }) {
    const m = await openModel(id);
    try {
      const file = new OpfsFile(m.handle);
      return { size: file.length, hex: hex(file.readAt(offset, length)) };
    } finally {
      m.close();
    }
  },
  // Reads through the JS ByteReader the engine's loader takes (ensureReader) and returns the bytes as hex.
  async readerRead({ url, sha256, offset, length }) {
    const reader = await ensureReader(url, { sha256 });
    try {
      return { size: reader.size, fromStorage: reader.model.fromStorage, hex: hex(await reader.read(offset, length)) };
    } finally {
      reader.close();
    }
  },
};

onmessage = async ({ data: { id, op, args } }) => {
  try {
    postMessage({ id, result: await ops[op](args ?? {}) });
  } catch (e) {
    postMessage({ id, error: { code: e?.code ?? "none", name: e?.name, message: String(e?.message ?? e) } });
  }
};
postMessage({ ready: true });
