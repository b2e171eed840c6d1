// The page at this stage: load the wasm package, read the chosen model's GGUF header through HTTP Range
// requests (never the whole file) and show its configuration and tensor table.

const DEFAULT_MODEL = "gemma-3-270m-q4_k_m.gguf";
// The header of a Gemma 3 file is several MB (a 262k-token vocabulary): start with 1 MiB and grow.
const FIRST_READ = 1 << 20;

const $ = (id) => document.getElementById(id);

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  const code = error && error.code ? `${error.code}: ` : "";
  box.textContent = `${code}${error && error.message ? error.message : String(error)}`;
  box.hidden = false;
  setStatus("Stopped on an error.");
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

/** An Error with a stable `code`, like the ones the wasm module throws. */
function codedError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

const count = (n) => n.toLocaleString("en-US");
const mb = (bytes) => (bytes < 1e6 ? `${count(bytes)} bytes` : `${(bytes / 1e6).toFixed(1)} MB`);

async function checkWebGpu() {
  const el = $("webgpu");
  if (!("gpu" in navigator)) {
    el.className = "warn";
    el.textContent =
      "This browser does not offer WebGPU, which gemma-web needs to run a model. " +
      "Use a browser with WebGPU enabled, such as a recent Chrome or Edge on a desktop; " +
      "the model's header below can still be read.";
    return;
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      el.className = "warn";
      el.textContent =
        "WebGPU is present but no GPU adapter is available (it may be disabled or blocklisted for this GPU).";
      return;
    }
    const info = adapter.info || {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed adapter";
    const f16 = adapter.features.has("shader-f16") ? "with shader-f16" : "without shader-f16";
    el.className = "ok";
    el.textContent = `WebGPU is available: ${name}, ${f16}, ` +
      `max storage binding ${mb(adapter.limits.maxStorageBufferBindingSize)}.`;
  } catch (e) {
    el.className = "warn";
    el.textContent = `WebGPU is present but requesting an adapter failed: ${e.message}`;
  }
}

async function fetchJson(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    throw codedError("Network", `could not fetch ${url}: ${e.message}`);
  }
  if (!res.ok) throw codedError("Network", `${url}: HTTP ${res.status}`);
  return res.json();
}

/** Bytes [start, end) of `url`; returns them with the file's total length from Content-Range. */
async function fetchRange(url, start, end) {
  let res;
  try {
    res = await fetch(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
  } catch (e) {
    throw codedError("Network", `could not fetch ${url}: ${e.message}`);
  }
  if (res.status !== 206) {
    // A server that ignores Range would send the whole model: refuse rather than download it.
    await res.body?.cancel();
    throw codedError("Network", `${url}: expected 206 Partial Content for a Range request, got HTTP ${res.status}`);
  }
  const total = Number((res.headers.get("Content-Range") || "").split("/")[1]);
  if (!Number.isSafeInteger(total)) throw codedError("Network", `${url}: no usable Content-Range header`);
  return { bytes: new Uint8Array(await res.arrayBuffer()), total };
}

/**
 * Reads the GGUF header by growing a prefix of the file until the parser has all of it.
 * Each round fetches only the bytes not yet held.
 */
async function readHeader(url, readGgufHeader, onProgress) {
  let prefix = new Uint8Array(0);
  let want = FIRST_READ;
  let total = Infinity;
  let requests = 0;
  for (;;) {
    want = Math.min(want, total);
    const part = await fetchRange(url, prefix.length, want);
    requests += 1;
    total = part.total;
    const grown = new Uint8Array(prefix.length + part.bytes.length);
    grown.set(prefix);
    grown.set(part.bytes, prefix.length);
    prefix = grown;
    onProgress(prefix.length, total, requests);
    const probe = readGgufHeader(prefix, total);
    if (!("needMore" in probe)) return { summary: probe, bytesRead: prefix.length, total, requests };
    if (prefix.length >= total) throw codedError("BadModel", "the parser wants more bytes than the file has");
    // Doubling keeps the number of requests logarithmic when the parser only knows the next field's end.
    want = Math.max(probe.needMore, prefix.length * 2);
  }
}

function fact(dl, key, label, value) {
  const dt = document.createElement("dt");
  dt.textContent = label;
  const dd = document.createElement("dd");
  dd.dataset.key = key;
  dd.textContent = value;
  dl.append(dt, dd);
}

function showConfig(summary) {
  const c = summary.config;
  const dl = $("config");
  dl.replaceChildren();
  const global = c.slidingWindow == null
    ? "all layers attend globally"
    : `layers ${c.globalLayers.join(", ")} global, the others local`;
  fact(dl, "architecture", "Architecture", summary.architecture);
  if (summary.name) fact(dl, "name", "Name", summary.name);
  fact(dl, "layers", "Layers", c.layers);
  fact(dl, "d_model", "Model width (d_model)", c.dModel);
  fact(dl, "ffn", "Feed-forward width", c.ffn);
  fact(dl, "heads", "Attention heads", c.heads);
  fact(dl, "kv_heads", "Key/value heads", c.kvHeads);
  fact(dl, "head_dim", "Head dimension", c.headDim);
  fact(dl, "window", "Sliding window", c.slidingWindow == null ? "none" : `${c.slidingWindow} tokens (${global})`);
  fact(dl, "rope", "RoPE base", c.ropeBaseGlobal === c.ropeBaseLocal
    ? count(c.ropeBaseGlobal) : `${count(c.ropeBaseGlobal)} global, ${count(c.ropeBaseLocal)} local`);
  fact(dl, "eps", "RMSNorm epsilon", c.eps);
  fact(dl, "query_scale", "Query scale", c.queryScale);
  fact(dl, "softcap", "Logit soft-caps", c.attnSoftcap == null && c.finalSoftcap == null
    ? "none" : `attention ${c.attnSoftcap ?? "none"}, final ${c.finalSoftcap ?? "none"}`);
  fact(dl, "context", "Context length", count(c.contextLength));
  fact(dl, "vocab", "Vocabulary", count(c.vocab));
  fact(dl, "gguf", "GGUF", `version ${summary.version}, ${count(summary.metadataCount)} metadata keys, ` +
    `tensor data from byte ${count(summary.dataOffset)}`);
  $("config-section").hidden = false;
}

function showTensors(summary) {
  const box = $("tensors");
  box.replaceChildren();
  $("tensor-total").textContent =
    `${count(summary.tensors.length)} tensors, ${mb(summary.tensorBytes)} of weights, by type:`;
  for (const group of summary.types) {
    const details = document.createElement("details");
    details.dataset.type = group.type;
    const head = document.createElement("summary");
    head.textContent = `${group.type}: ${count(group.count)} tensor${group.count === 1 ? "" : "s"}, ${mb(group.bytes)}`;
    details.append(head);
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.className = "visually-hidden";
    caption.textContent = `${group.type} tensors`;
    table.innerHTML = "<thead><tr><th scope=col>Name</th><th scope=col>Shape (row length first)</th>" +
      "<th scope=col class=num>Bytes</th></tr></thead>";
    table.prepend(caption);
    const body = document.createElement("tbody");
    for (const t of summary.tensors.filter((t) => t.type === group.type)) {
      const row = body.insertRow();
      const name = document.createElement("code");
      name.textContent = t.name;
      row.insertCell().append(name);
      row.insertCell().textContent = t.dims.join(" × ");
      const bytes = row.insertCell();
      bytes.className = "num";
      bytes.textContent = count(t.bytes);
    }
    table.append(body);
    details.append(table);
    box.append(details);
  }
  $("tensor-section").hidden = false;
}

async function showModel(model, readGgufHeader) {
  clearError();
  $("config-section").hidden = true;
  $("tensor-section").hidden = true;
  setStatus(`Reading the header of ${model.name}…`);
  const { summary, bytesRead, total, requests } = await readHeader(model.url, readGgufHeader, (have, all, n) => {
    $("fetch-info").textContent = `Read ${mb(have)} of ${mb(all)} in ${n} Range request${n === 1 ? "" : "s"}…`;
  });
  const info = $("fetch-info");
  info.textContent = `${model.name}: ${mb(total)}. Header read with ${requests} Range request` +
    `${requests === 1 ? "" : "s"}: ${mb(bytesRead)} fetched, ${(100 * bytesRead / total).toFixed(1)}% of the file.`;
  info.dataset.requests = requests;
  info.dataset.bytesRead = bytesRead;
  showConfig(summary);
  showTensors(summary);
  setStatus(`Header of ${model.name} read.`);
}

async function main() {
  checkWebGpu();
  setStatus("Loading the wasm module…");
  let wasm;
  try {
    wasm = await import("./pkg/gemma_web.js");
    await wasm.default();
  } catch (e) {
    throw codedError("Unsupported", `could not load the wasm package (www/pkg; build it with \`make wasm\`): ${e.message}`);
  }
  setStatus("Listing models…");
  const { models } = await fetchJson("/models/index.json");
  if (models.length === 0) {
    throw codedError("BadModel", "the server's models folder has no .gguf file (`make demo` puts Gemma 3 270M there)");
  }
  const select = $("model-select");
  for (const m of models) select.add(new Option(`${m.name} (${mb(m.size)})`, m.name));
  const chosen = models.find((m) => m.name === DEFAULT_MODEL) || models[0];
  select.value = chosen.name;
  select.disabled = false;
  select.addEventListener("change", () => {
    const model = models.find((m) => m.name === select.value);
    showModel(model, wasm.readGgufHeader).catch(showError);
  });
  await showModel(chosen, wasm.readGgufHeader);
}

main().catch(showError);
