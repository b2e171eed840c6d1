// One thread of the CPU engine's pool (started by www/wasm-loader.js from the engine's worker): it instantiates the
// threaded wasm package on the shared memory it is sent, says it is ready, then runs one of rayon's threads, which
// takes work from the engine for as long as the worker lives.
//   in:  { mainJS, module, memory }   the package's JS URL, its compiled WebAssembly.Module and shared Memory
//   out: { ready: true } | { error }

self.onmessage = async ({ data: { mainJS, module, memory } }) => {
  let pkg;
  try {
    pkg = await import(mainJS);
    await pkg.default({ module_or_path: module, memory });
  } catch (e) {
    self.postMessage({ error: String(e?.message ?? e) });
    return;
  }
  self.postMessage({ ready: true });
  pkg.runPoolWorker();
};
