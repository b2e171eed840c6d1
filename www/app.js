// The chat page, built on the public module www/gemma-web.js (the engine runs in its worker). Choosing a model reads
// only its GGUF header (HTTP Range requests, or File.slice) to show its size and details; "Load" streams the weights
// to the GPU. Instruction-tuned models get a chat; base models (like the local Gemma 3 270M) continue the user's text.

import {
  createEngine, deleteStoredModel, describeModel, hasStorage, hasWebGpu, listStoredModels, loadCatalog,
} from "./gemma-web.js";
import { HF_ENDPOINT } from "./hub.js";

// The header of a Gemma 3 file is several MB (a 262k-token vocabulary): start with 1 MiB and grow.
const FIRST_READ = 1 << 20;
const FILE_CHOICE = "file";
const EXAMPLES = [
  "The capital of France is",
  "Once upon a time, in a small village by the sea,",
  "The three most important inventions of the twentieth century are",
  "Here is a simple recipe for pancakes:",
];

const $ = (id) => document.getElementById(id);
const count = (n) => n.toLocaleString("en-US");
const mb = (bytes) => (bytes < 1e6 ? `${count(bytes)} bytes`
  : bytes < 1e9 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e9).toFixed(1)} GB`);
const rate = (r) => (r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toPrecision(2));
const seconds = (s) => (s < 90 ? `${Math.round(s)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);

// Where hf: names resolve: Hugging Face, or a mirror given as ?hf-endpoint=https://... (the page says which).
const hfEndpoint = new URLSearchParams(location.search).get("hf-endpoint") || HF_ENDPOINT;

const state = {
  choices: [],
  choice: null,
  engine: null,
  mode: null,
  messages: [],
  generating: false,
  webgpu: hasWebGpu(),
  /** A software WebGPU adapter (SwiftShader, WARP): "auto" runs the CPU engine then. */
  softwareAdapter: false,
};
// For the curious (and the tests): the engine in use, from the console.
window.gemmaPage = state;

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

function codedError(code, message) {
  const e = new Error(message);
  e.code = code;
  return e;
}

async function checkWebGpu() {
  const el = $("webgpu");
  if (!state.webgpu) {
    el.className = "warn";
    el.textContent =
      "This browser does not offer WebGPU, so models run on the CPU here (fine for small models; a recent Chrome or " +
      "Edge runs them on your GPU).";
    updateButtons();
    return;
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      state.webgpu = false;
      el.className = "warn";
      el.textContent = "WebGPU is present but no GPU adapter is available (it may be disabled or blocklisted for " +
        "this GPU), so models run on the CPU. Another browser or a graphics driver update may bring the GPU back.";
      updateButtons();
      return;
    }
    const info = adapter.info || {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed adapter";
    const f16 = adapter.features.has("shader-f16") ? "with shader-f16" : "without shader-f16";
    state.softwareAdapter = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
    el.className = state.softwareAdapter ? "warn" : "ok";
    el.textContent = state.softwareAdapter
      ? `WebGPU offers only a software adapter (${name}, ${f16}): "auto" runs models on the CPU, which is faster here.`
      : `WebGPU is available: ${name}, ${f16}.`;
  } catch (e) {
    state.webgpu = false;
    el.className = "warn";
    el.textContent = `WebGPU is present but requesting an adapter failed: ${e.message}`;
  }
  updateButtons();
}

// ---- Reading the header (before any download) ----

function urlRangeReader(url) {
  return async (start, end) => {
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
    return { bytes: await readAtMost(res, end - start, url), total, network: true };
  };
}

/** A response body of at most `limit` bytes: one that goes on past the range asked for is cut off, not read. */
async function readAtMost(res, limit, url) {
  const out = new Uint8Array(limit);
  let n = 0;
  const reader = res.body?.getReader();
  for (;;) {
    const { done, value } = reader ? await reader.read() : { done: true };
    if (done) return out.subarray(0, n);
    if (n + value.length > limit) {
      await reader.cancel();
      throw codedError("Network", `${url}: the server sent more than the ${limit} bytes asked for`);
    }
    out.set(value, n);
    n += value.length;
  }
}

function fileRangeReader(file) {
  return async (start, end) => ({
    bytes: new Uint8Array(await file.slice(start, Math.min(end, file.size)).arrayBuffer()),
    total: file.size,
    network: false,
  });
}

/** Grows a prefix of the file until the parser has the whole header; each round reads only new bytes. */
async function readHeader(readRange, readGgufHeader, onProgress) {
  let prefix = new Uint8Array(0);
  let want = FIRST_READ;
  let total = Infinity;
  let requests = 0;
  for (;;) {
    want = Math.min(want, total);
    const part = await readRange(prefix.length, want);
    requests += 1;
    total = part.total;
    const grown = new Uint8Array(prefix.length + part.bytes.length);
    grown.set(prefix);
    grown.set(part.bytes, prefix.length);
    prefix = grown;
    onProgress(prefix.length, total, requests);
    const probe = readGgufHeader(prefix, total);
    if (!("needMore" in probe)) return { summary: probe, bytesRead: prefix.length, total, requests };
    // The next prefix length, doubling (a few requests for a long vocabulary) up to the loader's cap: a header
    // that needs more, or more than the file, is a BadModel error from readGgufHeader.
    want = probe.needMore;
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

/** Chat for instruction-tuned models, text continuation for base models: the catalog says, else the file's name. */
function guessMode(summary) {
  return /(^|[^a-z])(it|instruct|chat)([^a-z]|$)/i.test(summary.name || "") ? "chat" : "text";
}

// ---- Choosing a model ----

async function showChoice(choice, readGgufHeader) {
  clearError();
  state.choice = choice;
  $("config-section").hidden = true;
  $("tensor-section").hidden = true;
  choice.size = null;
  updateButtons();
  const about = [];
  if (choice.entry && choice.entry.verified === false) {
    about.push("This model is downloaded from Hugging Face; the download is checked against the sha256 in the " +
      "catalog.");
  }
  const d = choice.described;
  if (d?.repo) {
    about.push(`${d.repo}, file ${d.file}, commit ${d.revision.slice(0, 10)} on ${new URL(d.fetchUrl).host}; ` +
      `sha256 ${d.sha256.slice(0, 16)}…, checked after the download.`);
  }
  const license = d?.license ?? choice.entry?.license;
  if (license) about.push(`License: ${license}; by downloading it you accept the model's terms of use.`);
  $("model-about").textContent = about.join(" ");
  setStatus(`Reading the header of ${choice.label}…`);
  const reader = choice.file ? fileRangeReader(choice.file) : urlRangeReader(choice.fetchUrl ?? choice.url);
  let header;
  try {
    header = await readHeader(reader, readGgufHeader, (have, all, n) => {
      $("fetch-info").textContent = `Reading the header: ${mb(have)} of ${mb(all)} in ${n} request${n === 1 ? "" : "s"}…`;
    });
  } catch (e) {
    $("fetch-info").textContent = "";
    if (choice.entry?.approxBytes) {
      $("model-about").textContent += ` Its size should be about ${mb(choice.entry.approxBytes)}.`;
    }
    throw e;
  }
  if (state.choice !== choice) return;
  const { summary, bytesRead, total, requests } = header;
  if (d?.size && d.size !== total) {
    throw codedError("Integrity", `${choice.label}: the hub says ${d.size} bytes, the file has ${total}`);
  }
  choice.size = total;
  choice.mode = choice.entry?.mode || guessMode(summary);
  if (!state.engine) $("mode-select").value = choice.mode;
  const info = $("fetch-info");
  let where = "read from your disk";
  if (!choice.file && !hasStorage()) {
    where = "streamed to your GPU (this browser has no storage for it, so every load downloads it again)";
  } else if (!choice.file) {
    const stored = (await listStoredModels().catch(() => [])).find((m) => m.url === choice.url && m.usable);
    if (stored) {
      where = "already stored in this browser: loading it downloads nothing";
    } else {
      const { quota, usage } = (await navigator.storage?.estimate?.().catch(() => null)) ?? {};
      const free = Number.isFinite(quota) && Number.isFinite(usage) ? `; ${mb(Math.max(0, quota - usage))} free for it` : "";
      where = `downloaded once into this browser's storage${free}`;
    }
  }
  if (state.choice !== choice) return;
  info.textContent = `${choice.label}: ${mb(total)}, ${where}. ` +
    (choice.mode === "chat" ? "Instruction-tuned: you can chat with it." : "A base model: it continues your text.");
  info.dataset.requests = requests;
  info.dataset.bytesRead = bytesRead;
  info.dataset.network = choice.file ? "0" : "1";
  showConfig(summary);
  showTensors(summary);
  setStatus(`${choice.label}: ready to load (${mb(total)}).`);
  updateButtons();
}

function updateButtons() {
  const c = state.choice;
  const load = $("load");
  const loaded = state.engine && state.loadedChoice === c && state.loadedBackend === $("backend-select").value;
  const needsGpu = $("backend-select").value === "webgpu";
  load.disabled = (needsGpu && !state.webgpu) || !c || !c.size || state.generating || state.loading || loaded;
  load.textContent = loaded ? "Loaded" : c && c.size ? `Load model (${mb(c.size)})` : "Load model";
  for (const b of document.querySelectorAll(".stop")) b.disabled = !state.generating;
  $("send").disabled = !state.engine || state.generating;
  $("continue").disabled = !state.engine || state.generating;
  $("new-chat").disabled = !state.engine || state.generating;
}

// ---- Loading ----

async function loadChoice() {
  const choice = state.choice;
  clearError();
  if (state.engine) {
    const old = state.engine;
    state.engine = null;
    await old.unload();
  }
  $("chat-section").hidden = true;
  $("text-section").hidden = true;
  $("engine-info").textContent = "";
  $("stats").textContent = "";
  state.loading = true;
  updateButtons();
  $("progress-box").hidden = false;
  const bar = $("load-progress");
  bar.value = 0;
  setStatus(`Loading ${choice.label}…`);
  const started = performance.now();
  try {
    const engine = await createEngine({
      // A catalog id or a pasted name keeps its sha256 and pinned revision; a local file is the File itself.
      model: choice.file || choice.ref || choice.entry?.id || choice.url,
      hfEndpoint,
      contextLength: 2048,
      backend: $("backend-select").value,
      onProgress: (p) => {
        bar.value = p.total ? p.loaded / p.total : 0;
        const speed = p.bytesPerSecond > 0 ? ` · ${(p.bytesPerSecond / 1e6).toFixed(1)} MB/s` : "";
        const left = p.secondsLeft != null ? ` · ${seconds(p.secondsLeft)} left` : "";
        const what = { download: "Downloading", waiting: "Downloading", verify: "Checking the stored copy",
          load: "Loading the weights" }[p.phase] ?? "Loading";
        const info = $("load-info");
        info.textContent = p.phase === "waiting"
          ? `${what}: ${mb(p.loaded)} of ${mb(p.total)}; retrying in ${seconds(p.retryInSeconds)} (${p.reason})`
          : `${what}: ${mb(p.loaded)} of ${mb(p.total)}${speed}${left}`;
        info.dataset.phase = p.phase;
      },
    });
    state.engine = engine;
    state.loadedChoice = choice;
    state.loadedBackend = $("backend-select").value;
    // The engine reloads the model on a new device by itself; the reader should know why the text paused.
    engine.addEventListener("devicelost", () =>
      setStatus("The GPU was reset. Loading the model again from this browser's storage; the answer will go on…"));
    engine.addEventListener("recovered", (e) => {
      state.recovered = true;
      setStatus(`Recovered from a GPU reset in ${seconds(e.detail.seconds)}; the answer goes on…`);
    });
    state.mode = $("mode-select").value;
    const caps = engine.capabilities;
    const took = (performance.now() - started) / 1000;
    $("load-info").textContent = `Loaded in ${seconds(took)}.`;
    const engineInfo = $("engine-info");
    const where = caps
      ? `the GPU: ${caps.adapterName || "an unnamed adapter"} (${caps.backend}), capability tier ${caps.tier}` +
        `${caps.f16 ? "" : " (no shader-f16)"}`
      : `the CPU, ${engine.info.threads} thread${engine.info.threads === 1 ? "" : "s"}`;
    const fewer = engine.info.threadsReason ? ` One thread only: ${engine.info.threadsReason}.` : "";
    engineInfo.textContent = `Running on ${where} (${engine.info.backendReason}); ` +
      `context ${count(engine.info.contextLength)} tokens.${fewer}`;
    engineInfo.dataset.backend = engine.backend;
    if (caps) engineInfo.dataset.tier = caps.tier;
    showConfig(engine.info.header);
    showTensors(engine.info.header);
    state.messages = [];
    $("messages").replaceChildren();
    $("completion").hidden = true;
    showMode();
    setStatus(`${choice.label} is loaded.`);
    showStored();
  } finally {
    state.loading = false;
    updateButtons();
  }
}

/** The models kept in this browser's storage, with a delete button each. */
async function showStored() {
  const list = $("stored");
  if (!hasStorage()) {
    $("stored-section").hidden = true;
    return;
  }
  const models = await listStoredModels().catch(() => []);
  list.replaceChildren();
  $("stored-none").hidden = models.length > 0;
  for (const m of models) {
    const li = document.createElement("li");
    const name = m.url ? decodeURIComponent(m.url.split("/").pop()) : m.id;
    const desc = m.usable ? mb(m.size ?? m.fileBytes) : `incomplete: ${mb(m.storedBytes)} of ${mb(m.size ?? 0)}, resumes on the next load`;
    li.append(`${name} (${desc}) `);
    const del = document.createElement("button");
    del.type = "button";
    del.textContent = "Delete";
    del.addEventListener("click", async () => {
      del.disabled = true;
      try {
        await deleteStoredModel(m.id);
      } catch (e) {
        showError(e);
      }
      showStored();
    });
    li.append(del);
    list.append(li);
  }
}

/** The chat or the text-continuation panel, as the mode selector says. */
function showMode() {
  state.mode = $("mode-select").value;
  $("chat-section").hidden = !state.engine || state.mode !== "chat";
  $("text-section").hidden = !state.engine || state.mode !== "text";
  if (state.engine) $(state.mode === "chat" ? "chat-input" : "text-input").focus();
}

// ---- Generating ----

function settings() {
  const num = (id, fallback) => {
    const v = Number($(id).value);
    return Number.isFinite(v) ? v : fallback;
  };
  return {
    max_tokens: Math.max(1, Math.round(num("max-tokens", 64))),
    temperature: Math.max(0, num("temperature", 0.8)),
    top_k: Math.max(0, Math.round(num("top-k", 64))),
    top_p: Math.min(1, Math.max(0.01, num("top-p", 0.95))),
    // Empty: a fresh seed for every answer (the stats show it).
    seed: $("seed").value === "" ? undefined : Math.max(0, Math.round(num("seed", 0))),
  };
}

function showStats(usage, finish, seed) {
  const reused = usage.reused_tokens ? ` (${count(usage.reused_tokens)} earlier tokens reused from memory)` : "";
  const why = { stop: "the model ended its answer", length: "reached the token limit", abort: "stopped" }[finish] || finish;
  const el = $("stats");
  el.textContent = `Prompt: ${count(usage.prompt_tokens)} tokens at ${rate(usage.prefill_tok_s)} tokens/s${reused}. ` +
    `Reply: ${count(usage.completion_tokens)} tokens at ${rate(usage.decode_tok_s)} tokens/s (${why}). Seed ${seed}.`;
  el.dataset.finish = finish;
}

async function stream(chunks, onText) {
  let last = null;
  for await (const chunk of chunks) {
    const choice = chunk.choices[0];
    const text = choice?.delta?.content ?? choice?.text ?? "";
    if (text) onText(text);
    last = chunk;
  }
  return last;
}

async function run(task) {
  clearError();
  state.generating = true;
  updateButtons();
  setStatus("Generating…");
  state.recovered = false;
  try {
    await task();
    setStatus(state.recovered ? "Done, after recovering from a GPU reset." : "Done.");
  } catch (e) {
    showError(e);
  } finally {
    state.generating = false;
    updateButtons();
  }
}

function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = `message ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Gemma";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return body;
}

async function sendChat() {
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !state.engine || state.generating) return;
  input.value = "";
  state.messages.push({ role: "user", content: text });
  addMessage("user", text);
  const body = addMessage("assistant", "");
  body.classList.add("streaming");
  await run(async () => {
    let reply = "";
    try {
      const chunks = await state.engine.chat.completions.create({ messages: state.messages, stream: true, ...settings() });
      const last = await stream(chunks, (t) => {
        reply += t;
        body.textContent = reply;
      });
      showStats(last.usage, last.choices[0].finish_reason, last.gemma.seed);
    } finally {
      body.classList.remove("streaming");
      // What the model said stays in the conversation, also when it was stopped.
      state.messages.push({ role: "assistant", content: reply });
    }
  });
}

async function continueText() {
  const input = $("text-input");
  const prompt = input.value;
  if (!prompt.trim() || !state.engine || state.generating) return;
  const box = $("completion");
  box.querySelector(".prompt").textContent = prompt;
  const out = box.querySelector(".generated");
  out.textContent = "";
  box.hidden = false;
  box.classList.add("streaming");
  await run(async () => {
    try {
      const chunks = await state.engine.completions.create({ prompt, stream: true, ...settings() });
      const last = await stream(chunks, (t) => (out.textContent += t));
      showStats(last.usage, last.choices[0].finish_reason, last.gemma.seed);
      // Continue again from where it stopped.
      input.value = prompt + out.textContent;
    } finally {
      box.classList.remove("streaming");
    }
  });
}

// ---- Start ----

async function listChoices() {
  const [catalog, index] = await Promise.all([
    loadCatalog().catch(() => ({ models: [] })),
    fetch("/models/index.json").then((r) => (r.ok ? r.json() : { models: [] })).catch(() => ({ models: [] })),
  ]);
  const localUrls = new Map(index.models.map((m) => [new URL(`/models/${encodeURIComponent(m.name)}`, location.href).href, m]));
  const choices = [];
  for (const entry of catalog.models) {
    const local = entry.url.startsWith(location.origin);
    // A local catalog model is offered only when this server really has it.
    if (local && !localUrls.has(entry.url)) continue;
    localUrls.delete(entry.url);
    choices.push({ key: entry.id, label: entry.name, url: entry.url, entry, local });
  }
  for (const [url, m] of localUrls) {
    choices.push({ key: `local:${m.name}`, label: `${m.name} (on this server)`, url, entry: null, local: true });
  }
  const preferred = choices.find((c) => c.key === catalog.default && c.local) || choices.find((c) => c.local) || choices[0];
  return { choices, preferred };
}

async function main() {
  checkWebGpu();
  for (const text of EXAMPLES) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.textContent = text;
    b.addEventListener("click", () => {
      $("text-input").value = text;
      continueText();
    });
    $("examples").append(b);
  }
  $("load").addEventListener("click", () => loadChoice().catch(showError));
  for (const b of document.querySelectorAll(".stop")) b.addEventListener("click", () => state.engine?.interrupt());
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      sendChat();
    }
  });
  $("continue").addEventListener("click", continueText);
  $("mode-select").addEventListener("change", showMode);
  // ?backend=cpu (or webgpu) preselects where the model runs.
  const backend = new URLSearchParams(location.search).get("backend");
  if (["auto", "webgpu", "cpu"].includes(backend)) $("backend-select").value = backend;
  $("backend-select").addEventListener("change", updateButtons);
  $("new-chat").addEventListener("click", async () => {
    state.messages = [];
    $("messages").replaceChildren();
    $("stats").textContent = "";
    await state.engine?.resetChat();
  });
  updateButtons();

  setStatus("Loading the wasm module…");
  let wasm;
  try {
    wasm = await import("./pkg/gemma_web.js");
    await wasm.default();
  } catch (e) {
    throw codedError("Unsupported", `could not load the wasm package (www/pkg; build it with \`make wasm\`): ${e.message}`);
  }
  showStored();
  setStatus("Listing models…");
  const { choices, preferred } = await listChoices();
  state.choices = choices;
  const select = $("model-select");
  for (const c of choices) select.add(new Option(c.label, c.key));
  select.add(new Option("Open a .gguf file from your computer (or drop one on the page)…", FILE_CHOICE));
  const fileInput = $("model-file");
  let previous = preferred?.key ?? FILE_CHOICE;
  select.value = previous;
  select.disabled = false;
  select.addEventListener("change", () => {
    if (select.value === FILE_CHOICE) {
      fileInput.click();
      return;
    }
    previous = select.value;
    const choice = choices.find((c) => c.key === select.value);
    showChoice(choice, wasm.readGgufHeader).catch(showError);
  });
  const chooseFile = (file) => {
    select.value = FILE_CHOICE;
    const choice = { key: FILE_CHOICE, label: file.name, file, entry: null, local: true };
    showChoice(choice, wasm.readGgufHeader).catch(showError);
  };
  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    if (file) chooseFile(file);
    else select.value = previous;
  });
  // A .gguf dropped anywhere on the page is opened like a picked one (while nothing is loading or generating).
  document.addEventListener("dragover", (e) => {
    if (!e.dataTransfer?.types.includes("Files")) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = state.loading || state.generating ? "none" : "copy";
  });
  document.addEventListener("drop", (e) => {
    const file = e.dataTransfer?.files?.[0];
    if (!file) return;
    e.preventDefault();
    if (state.loading || state.generating) return;
    chooseFile(file);
  });
  // A Gemma GGUF by name or link: resolved through the hub's API (commit, size, sha256), then only its header is read.
  $("hub-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("model-ref").value.trim();
    if (!text || state.loading) return;
    clearError();
    setStatus(`Looking up ${text}…`);
    try {
      const d = await describeModel(text, { hfEndpoint });
      const key = `ref:${d.url}`;
      let choice = choices.find((c) => c.key === key);
      if (!choice) {
        choice = { key, label: d.entry?.name ?? d.name, url: d.url, fetchUrl: d.fetchUrl, ref: d.entry ? d.entry.id : text,
          entry: d.entry, described: d, local: false };
        choices.push(choice);
        select.add(new Option(choice.label, key), select.options.length - 1);
      }
      select.value = key;
      previous = key;
      await showChoice(choice, wasm.readGgufHeader);
    } catch (err) {
      showError(err);
    }
  });
  if (!preferred) {
    throw codedError("BadModel", "no model to offer: the server's models folder is empty and the catalog is missing " +
      "(`make demo` puts Gemma 3 270M there); you can still open a .gguf file");
  }
  await showChoice(preferred, wasm.readGgufHeader);
}

main().catch(showError);
