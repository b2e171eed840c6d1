// Picks and starts the engine's wasm package inside the engine's worker (www/worker.js):
//   ./pkg-threads/  shared memory and rayon's pool on nested Web Workers (www/pool-worker.js; `make wasm-threads`):
//                   the CPU engine's matrix products and attention run on every thread. It needs a cross-origin isolated page
//                   (the server sends Cross-Origin-Opener-Policy: same-origin and
//                   Cross-Origin-Embedder-Policy: require-corp), which is what makes SharedArrayBuffer available.
//   ./pkg/          single-threaded, for every other case, and whenever starting the threaded one fails.
//
// loadWasm({ threads }) resolves with { module, threads, package, fallback }: the package's exports, the threads
// its CPU engine runs on, which package ("pkg-threads" | "pkg"), and why the single-threaded package runs when
// threads were wanted (null otherwise). Each package is started once per worker; a threaded pool keeps the size it
// started with (rayon's global pool cannot be resized), so a later call asking for another count gets that one.

/** Threads wanted when the load does not say: the machine's logical cores, at most this many. */
const MAX_DEFAULT_THREADS = 8;
/** Starting the pool's workers (each instantiates the module) longer than this counts as a failure. */
const POOL_START_TIMEOUT_MS = 30_000;

let single = null;
let threaded = null;

/** The thread count a load gets when it does not ask for one. */
export function defaultThreads() {
  const cores = Number(self.navigator?.hardwareConcurrency) || 1;
  return Math.max(1, Math.min(cores, MAX_DEFAULT_THREADS));
}

/** Why the threaded package cannot run here (null when it can). */
function threadsUnavailable() {
  if (!self.crossOriginIsolated) {
    return "the page is not cross-origin isolated (the server must send COOP: same-origin and COEP: require-corp)";
  }
  if (typeof SharedArrayBuffer !== "function") return "this browser has no SharedArrayBuffer";
  if (typeof Worker !== "function") return "this browser cannot start workers from a worker";
  return null;
}

async function startSingle() {
  const module = await import("./pkg/gemma_web.js");
  await module.default();
  return module;
}

const POOL_WORKER_URL = new URL("./pool-worker.js", import.meta.url);
const THREADED_JS_URL = new URL("./pkg-threads/gemma_web.js", import.meta.url);

/**
 * A worker starts only from its creator's origin: where these scripts come from another one (a CDN; the engine's
 * worker is then a same-origin blob, see gemma-web.js), a same-origin blob module imports the pool's script instead.
 */
function poolWorkerUrl() {
  if (POOL_WORKER_URL.origin === self.location.origin) return POOL_WORKER_URL;
  const shim = `import ${JSON.stringify(POOL_WORKER_URL.href)};`;
  return URL.createObjectURL(new Blob([shim], { type: "text/javascript" }));
}

/** Starts one pool worker on the package's module and memory; resolves with it once it waits for its thread. */
function startPoolWorker(url, init) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(url, { type: "module", name: "gemma-web-pool" });
    const fail = (why) => {
      worker.terminate();
      reject(new Error(why));
    };
    worker.onmessage = ({ data }) => (data.ready ? resolve(worker) : fail(`a pool worker failed: ${data.error}`));
    worker.onerror = (e) => {
      e.preventDefault();
      fail(`a pool worker failed to start: ${e.message || "its script did not load"}`);
    };
    worker.postMessage(init);
  });
}

/** Pool workers, kept referenced for as long as this worker lives (an unreferenced one may be collected). */
const poolWorkers = [];

async function startThreaded(n) {
  const module = await import(THREADED_JS_URL.href);
  await module.default();
  const init = { mainJS: THREADED_JS_URL.href, module: module.sharedModule(), memory: module.sharedMemory() };
  const url = poolWorkerUrl();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`its ${n} workers did not start within ${POOL_START_TIMEOUT_MS / 1000} s`)),
      POOL_START_TIMEOUT_MS,
    );
  });
  const started = Array.from({ length: n }, () => startPoolWorker(url, init));
  try {
    poolWorkers.push(...(await Promise.race([Promise.all(started), timeout])));
  } catch (e) {
    for (const w of started) w.then((worker) => worker.terminate(), () => {});
    throw e;
  } finally {
    clearTimeout(timer);
  }
  // Every worker waits for its thread now: rayon's pool is built on them (this blocks until they all run).
  return { module, threads: module.buildThreadPool(n) };
}

/**
 * The wasm package for a load that wants `threads` CPU threads (default: defaultThreads()).
 * @param {{ threads?: number }} [options]
 */
export async function loadWasm({ threads } = {}) {
  const want = Number.isInteger(threads) && threads > 0 ? threads : defaultThreads();
  let fallback = null;
  if (want > 1) {
    fallback = threadsUnavailable();
    if (!fallback) {
      threaded ??= startThreaded(want);
      try {
        const { module, threads: running } = await threaded;
        return { module, threads: running, package: "pkg-threads", fallback: null };
      } catch (e) {
        // Kept, not retried: a pool that failed half-way cannot be started again in this worker.
        fallback = `the threaded package failed to start: ${e?.message ?? e}`;
      }
    }
    console.warn(`gemma-web: one CPU thread instead of ${want}: ${fallback}`);
  }
  single ??= startSingle();
  return { module: await single, threads: 1, package: "pkg", fallback };
}
