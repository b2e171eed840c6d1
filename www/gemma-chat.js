// <gemma-chat>: a Gemma assistant in any page with one script tag and one element.
//
//   <script type="module" src="https://example.com/gemma-web/gemma-chat.js"></script>
//   <gemma-chat model="gemma-3-270m" system="You answer questions about this page." context-selector="main"></gemma-chat>
//
// Built only on the public API of gemma-web.js; README.md ("Embedding") lists the attributes, events and methods.
// Nothing is downloaded before the reader asks for it (loading="interaction", the default): the widget first shows
// the model's size and the free storage. A model already in the browser's storage loads without asking, since it
// costs no download.
//
// Content-Security-Policy: the styles are a constructable stylesheet (adoptedStyleSheets), which style-src does not
// govern, and the DOM is built with DOM calls (no innerHTML, so Trusted Types are not needed). The engine's worker
// needs worker-src (or script-src) 'self' for worker.js and 'wasm-unsafe-eval' to compile the wasm; 'unsafe-eval'
// is never needed. Only a browser without adoptedStyleSheets falls back to a <style> element, which style-src
// governs.

import {
  createEngine, describeModel, GemmaWebError, hasStorage, hasWebGpu, listStoredModels, loadCatalog,
} from "./gemma-web.js";

const LIGHT = `
  --_bg: var(--gemma-chat-background, #ffffff);
  --_fg: var(--gemma-chat-color, #1f1f1f);
  --_muted: var(--gemma-chat-muted-color, #5e5e5e);
  --_border: var(--gemma-chat-border-color, #d3d6db);
  --_accent: var(--gemma-chat-accent, #0b57d0);
  --_accent-fg: var(--gemma-chat-accent-color, #ffffff);
  --_question-bg: var(--gemma-chat-question-background, #e8f0fe);
  --_answer-bg: var(--gemma-chat-answer-background, #f3f4f6);
  --_error: var(--gemma-chat-error-color, #b3261e);`;
const DARK = `
  --_bg: var(--gemma-chat-background, #1e1f22);
  --_fg: var(--gemma-chat-color, #e8eaed);
  --_muted: var(--gemma-chat-muted-color, #a8abb0);
  --_border: var(--gemma-chat-border-color, #44474d);
  --_accent: var(--gemma-chat-accent, #a8c7fa);
  --_accent-fg: var(--gemma-chat-accent-color, #062e6f);
  --_question-bg: var(--gemma-chat-question-background, #29364d);
  --_answer-bg: var(--gemma-chat-answer-background, #2a2b2f);
  --_error: var(--gemma-chat-error-color, #f2b8b5);`;

const CSS = `
:host {
  ${LIGHT}
  display: block;
  color-scheme: light;
  font: var(--gemma-chat-font, 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
}
:host([hidden]) { display: none; }
@media (prefers-color-scheme: dark) {
  :host(:not([theme="light"])) { ${DARK} color-scheme: dark; }
}
:host([theme="dark"]) { ${DARK} color-scheme: dark; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.panel {
  display: flex; flex-direction: column; gap: 0.6em; padding: 0.9em;
  background: var(--_bg); color: var(--_fg);
  border: 1px solid var(--_border); border-radius: var(--gemma-chat-radius, 12px);
}
header { display: flex; align-items: baseline; justify-content: space-between; gap: 0.5em; }
h2 { margin: 0; font-size: 1.05em; font-weight: 600; }
p { margin: 0; }
.muted, .note, .status, .progress-text { color: var(--_muted); font-size: 0.9em; }
.status:empty { display: none; }
button {
  font: inherit; cursor: pointer; padding: 0.4em 0.9em;
  border-radius: calc(var(--gemma-chat-radius, 12px) * 0.6);
  border: 1px solid var(--_border); background: transparent; color: var(--_fg);
}
button.primary { background: var(--_accent); color: var(--_accent-fg); border-color: var(--_accent); }
button:disabled { opacity: 0.5; cursor: default; }
button.link { border: none; padding: 0.1em 0.3em; color: var(--_accent); font-size: 0.85em; }
:focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }
.intro, .progress, .unsupported, .error { display: flex; flex-direction: column; gap: 0.5em; align-items: flex-start; }
progress { width: 100%; accent-color: var(--_accent); }
.error p { color: var(--_error); }
.code { font-family: ui-monospace, monospace; font-size: 0.85em; color: var(--_muted); }
.log {
  list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 0.5em;
  max-height: var(--gemma-chat-log-height, 24em); overflow-y: auto;
}
.log li {
  padding: 0.45em 0.7em; border-radius: calc(var(--gemma-chat-radius, 12px) * 0.8);
  white-space: pre-wrap; overflow-wrap: anywhere;
}
.log .question { background: var(--_question-bg); align-self: flex-end; max-width: 90%; }
.log .answer { background: var(--_answer-bg); align-self: flex-start; max-width: 100%; }
.log .answer[aria-busy="true"]::after { content: "▍"; color: var(--_muted); }
.log .answer[data-finish="length"]::after, .log .answer[data-finish="abort"]::after { content: " …"; color: var(--_muted); }
.log .answer.failed { color: var(--_error); }
.log .answer[data-finish]:empty::before { content: "(no answer)"; color: var(--_muted); }
form { display: flex; flex-direction: column; gap: 0.4em; }
textarea {
  font: inherit; width: 100%; resize: vertical; min-height: 2.6em; padding: 0.45em 0.6em;
  background: var(--_bg); color: var(--_fg);
  border: 1px solid var(--_border); border-radius: calc(var(--gemma-chat-radius, 12px) * 0.6);
}
.row { display: flex; gap: 0.5em; align-items: center; flex-wrap: wrap; }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
`;

/** Tokens kept free for the question and the chat template when the page text is fitted into the context. */
const QUESTION_ROOM = 64;
/** Below this many tokens the page text would be a useless scrap: leave it out. */
const MIN_PAGE_TOKENS = 16;
/** The longest answer when `max-tokens` is not set. */
const DEFAULT_MAX_TOKENS = 256;
/** A base model continues the Question/Answer text past its answer: these end it. */
const TEXT_MODE_STOPS = ["\n\n", "\nQuestion:"];

const BROWSERS = "Use a recent Chrome or Edge (Windows, macOS, ChromeOS or Android), Safari 26 or newer, " +
  "or Firefox 141 or newer on Windows.";

const FRIENDLY = {
  WebGPUUnavailable: "This browser cannot run the model on the GPU.",
  Unsupported: "The model cannot run here.",
  BadModel: "The model file is not one gemma-web can run.",
  Integrity: "The downloaded model is damaged; trying again downloads it anew.",
  Quota: "There is not enough free storage in this browser for the model.",
  Network: "The model could not be downloaded; check the connection and try again.",
  DeviceLost: "The GPU stopped working for this page.",
  OutOfMemory: "The GPU ran out of memory; close other tabs or use a smaller model.",
  Aborted: "Stopped.",
  PromptTooLong: "The question does not fit the model's context; ask a shorter one.",
  Io: "The browser's storage could not be read.",
};

const bytesText = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);
const secondsText = (s) => (s < 90 ? `${Math.max(1, Math.round(s))} s` : `${Math.round(s / 60)} min`);

/** A GemmaWebError for anything thrown, so every error event carries one of the stable codes. */
function coded(e) {
  if (e instanceof GemmaWebError) return e;
  return new GemmaWebError(typeof e?.code === "string" ? e.code : "Unsupported", e?.message || String(e));
}

/** `tag` with properties and children, built with DOM calls (no markup parsing: nothing for a CSP to block). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k.startsWith("aria-") || k === "role" || k === "for" || k === "part") el.setAttribute(k, v);
    else el[k] = v;
  }
  el.append(...children);
  return el;
}

let sharedSheet = null;

function adoptStyles(root) {
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet === "function" && "replaceSync" in CSSStyleSheet.prototype) {
    if (!sharedSheet) {
      sharedSheet = new CSSStyleSheet();
      sharedSheet.replaceSync(CSS);
    }
    root.adoptedStyleSheets = [sharedSheet];
  } else {
    root.append(h("style", { textContent: CSS }));
  }
}

/**
 * Cuts a base model's answer at the first stop sequence and holds back text that may be the start of one, so what
 * is shown (and sent as `token` events) never has to be taken back. Leading whitespace is dropped: a base model
 * answers "Answer:" with a space first.
 */
class AnswerFilter {
  #stops;
  #pending = "";
  #started = false;
  stopped = false;

  constructor(stops) {
    this.#stops = stops;
  }

  /** The text of `piece` that can be shown now. */
  push(piece) {
    if (this.stopped) return "";
    this.#pending += piece;
    if (!this.#started) {
      this.#pending = this.#pending.replace(/^\s+/, "");
      if (!this.#pending) return "";
      this.#started = true;
    }
    let cut = -1;
    for (const stop of this.#stops) {
      const at = this.#pending.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.#pending.slice(0, cut).trimEnd();
      this.#pending = "";
      return out;
    }
    let keep = 0;
    for (const stop of this.#stops) {
      for (let k = Math.min(stop.length - 1, this.#pending.length); k > keep; k--) {
        if (this.#pending.endsWith(stop.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    const out = this.#pending.slice(0, this.#pending.length - keep);
    this.#pending = this.#pending.slice(this.#pending.length - keep);
    return out;
  }

  /** What was held back, once the answer has ended. */
  end() {
    const out = this.stopped ? "" : this.#pending.trimEnd();
    this.#pending = "";
    return out;
  }
}

/** Same rule as gemma-web.js: a string without "/" that does not end in .gguf is a catalog id. */
const isCatalogId = (model) => !model.includes("/") && !model.endsWith(".gguf");

/** An instruction-tuned model's file name says so (Gemma's "-it" convention); anything else is a base model. */
const guessMode = (name) => (/(^|[^a-z])(it|instruct|chat)([^a-z]|$)/i.test(name || "") ? "chat" : "text");

export class GemmaChatElement extends HTMLElement {
  static observedAttributes = ["model", "heading", "placeholder", "loading", "context-selector"];

  #ui;
  #state = "idle";
  #engine = null;
  #mode = null;
  #error = null;
  #described = null;
  #loadPromise = null;
  #loadController = null;
  #observer = null;
  /** Bumped by each teardown: work begun for an earlier model or element life sees it changed and stops. */
  #generation = 0;
  #connected = false;
  #started = false;
  /** Earlier exchanges: { question, answer (as shown), raw (as generated, for the chat's KV-cache reuse) }. */
  #history = [];
  /** Bumped by clear(): an answer that was running then does not join the new conversation. */
  #conversation = 0;
  #pageContext = { key: null, text: "" };
  /** The lines under the title: the model being a base model, how much of the page is read, a GPU reset. */
  #notes = { mode: "", context: "", device: "" };

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    adoptStyles(root);
    this.#ui = this.#build();
    root.append(this.#ui.panel);
  }

  // ---- Attributes as properties ----

  get model() { return this.getAttribute("model") ?? ""; }
  set model(v) { this.setAttribute("model", v); }
  get system() { return this.getAttribute("system") ?? ""; }
  set system(v) { this.setAttribute("system", v); }
  get loading() {
    const v = this.getAttribute("loading");
    return v === "eager" || v === "lazy" ? v : "interaction";
  }
  set loading(v) { this.setAttribute("loading", v); }
  get contextSelector() { return this.getAttribute("context-selector") ?? ""; }
  set contextSelector(v) { this.setAttribute("context-selector", v); }
  get maxTokens() { return this.#number("max-tokens", DEFAULT_MAX_TOKENS, 1); }
  set maxTokens(v) { this.setAttribute("max-tokens", String(v)); }
  get temperature() { return this.#number("temperature", undefined, 0); }
  set temperature(v) { this.setAttribute("temperature", String(v)); }
  /** Where the model runs: "auto" (default: a hardware GPU, else the CPU), "webgpu" or "cpu"; read when it loads. */
  get backend() {
    const v = this.getAttribute("backend");
    return v === "webgpu" || v === "cpu" ? v : "auto";
  }
  set backend(v) { this.setAttribute("backend", v); }

  /** "idle", "unsupported", "consent", "loading", "ready", "answering" or "error". */
  get state() { return this.#state; }
  /** The loaded engine (gemma-web.js), or null. */
  get engine() { return this.#engine; }
  /** "chat" (instruction-tuned) or "text" (a base model, asked in a Question/Answer text), once known. */
  get mode() { return this.#mode; }
  /** The last error shown, or null. */
  get error() { return this.#error; }

  #number(name, fallback, min) {
    const raw = this.getAttribute(name);
    if (raw === null || raw.trim() === "") return fallback;
    const v = Number(raw);
    return Number.isFinite(v) && v >= min ? v : fallback;
  }

  // ---- Lifecycle ----

  connectedCallback() {
    this.#connected = true;
    this.#ui.title.textContent = this.#heading();
    this.#ui.input.placeholder = this.#placeholder();
    if (!this.#started) this.#start();
  }

  disconnectedCallback() {
    this.#connected = false;
    // Moving the element disconnects and reconnects it in one task: only a real removal frees the GPU.
    setTimeout(() => {
      if (!this.#connected) this.#teardown();
    }, 0);
  }

  attributeChangedCallback(name, old, value) {
    if (old === value) return;
    if (name === "heading" || name === "context-selector") this.#ui.title.textContent = this.#heading();
    if (name === "placeholder") this.#ui.input.placeholder = this.#placeholder();
    if (name === "model" && this.#connected && this.#started) {
      this.#teardown();
      this.#start();
    }
    if (name === "loading" && this.#state === "consent" && this.loading !== "interaction") this.#autoload();
  }

  #heading() {
    return this.getAttribute("heading") || (this.contextSelector ? "Ask about this page" : "Ask Gemma");
  }

  #placeholder() {
    return this.getAttribute("placeholder") || "Your question (Enter asks, Shift+Enter starts a new line)";
  }

  #teardown() {
    this.#observer?.disconnect();
    this.#observer = null;
    this.#loadController?.abort();
    this.#loadController = null;
    this.#loadPromise = null;
    const engine = this.#engine;
    this.#engine = null;
    this.#generation++;
    engine?.unload().catch(() => {});
    this.#history = [];
    this.#pageContext = { key: null, text: "" };
    this.#notes = { mode: "", context: "", device: "" };
    this.#renderNotes();
    this.#ui.log.replaceChildren();
    this.#started = false;
    this.#setState("idle");
  }

  // ---- The DOM ----

  #build() {
    const title = h("h2", { id: "title", part: "title" });
    const clear = h("button", { type: "button", className: "link", hidden: true }, "New conversation");
    const about = h("p", { className: "about" });
    const storage = h("p", { className: "muted storage" });
    const start = h("button", { type: "button", className: "primary start", part: "button" }, "Download and start");
    const bar = h("progress", { max: 1, value: 0, "aria-labelledby": "progress-text" });
    const progressText = h("p", { id: "progress-text", className: "progress-text" });
    const cancel = h("button", { type: "button", className: "cancel" }, "Cancel");
    const unsupported = h("div", { className: "unsupported", part: "unsupported", hidden: true });
    const errorText = h("p", { className: "error-text" });
    const errorCode = h("p", { className: "code" });
    const retry = h("button", { type: "button", className: "retry" }, "Try again");
    const log = h("ol", {
      className: "log", part: "log", role: "log", "aria-label": "Conversation", tabIndex: 0, hidden: true,
    });
    const input = h("textarea", { id: "question", rows: 2, part: "input" });
    const send = h("button", { type: "submit", className: "primary send", part: "button" }, "Ask");
    const stop = h("button", { type: "button", className: "stop", disabled: true }, "Stop");
    const form = h("form", { className: "ask", part: "form", hidden: true },
      h("label", { for: "question", className: "visually-hidden" }, "Your question"),
      input,
      h("div", { className: "row" }, send, stop));
    const note = h("p", { className: "note", part: "note", hidden: true });
    const status = h("p", { className: "status", role: "status" });
    const intro = h("div", { className: "intro", part: "intro", hidden: true }, about, storage, start);
    const progress = h("div", { className: "progress", part: "progress", hidden: true }, bar, progressText, cancel);
    const error = h("div", { className: "error", part: "error", role: "alert", hidden: true }, errorText, errorCode, retry);
    const panel = h("section", { className: "panel", part: "panel", "aria-labelledby": "title" },
      h("header", {}, title, clear), note, intro, progress, unsupported, error, log, form, status);

    start.addEventListener("click", () => this.load().catch(() => {}));
    cancel.addEventListener("click", () => this.#loadController?.abort());
    retry.addEventListener("click", () => this.load().catch(() => {}));
    clear.addEventListener("click", () => this.clear().catch(() => {}));
    stop.addEventListener("click", () => this.interrupt());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#submit();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#submit();
      }
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.#state === "answering") {
        event.preventDefault();
        this.interrupt();
      }
    });
    return {
      panel, title, clear, about, storage, start, bar, progressText, cancel, unsupported, errorText, errorCode, retry,
      log, input, send, stop, form, note, status, intro, progress, error,
    };
  }

  #setState(state) {
    this.#state = state;
    this.setAttribute("state", state);
    const ui = this.#ui;
    ui.intro.hidden = state !== "consent";
    ui.progress.hidden = state !== "loading";
    ui.unsupported.hidden = state !== "unsupported";
    ui.error.hidden = state !== "error";
    const loaded = state === "ready" || state === "answering";
    ui.form.hidden = !loaded;
    ui.log.hidden = !loaded || ui.log.childElementCount === 0;
    ui.clear.hidden = !loaded || ui.log.childElementCount === 0;
    ui.clear.disabled = state === "answering";
    ui.send.disabled = state === "answering";
    ui.stop.disabled = state !== "answering";
    // Focus on a control that just disappeared or was disabled moves on to the next step's control, so a keyboard
    // user is not sent back to the top of the page; focus outside the widget is left alone.
    const active = this.shadowRoot.activeElement;
    const gone = active && (active.disabled || (active.checkVisibility ? !active.checkVisibility() : !active.offsetParent));
    if (gone) ({ consent: ui.start, loading: ui.cancel, error: ui.retry, ready: ui.input, answering: ui.input })[state]?.focus();
  }

  #announce(text) {
    this.#ui.status.textContent = text;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  /** Shows `e` and fires `error`; returns the GemmaWebError. */
  #fail(e, { fatal }) {
    const error = coded(e);
    this.#error = error;
    if (fatal) {
      this.#ui.errorText.textContent = `${FRIENDLY[error.code] ?? "Something went wrong."} ${error.message}`;
      this.#ui.errorCode.textContent = `Error code: ${error.code}`;
      this.#setState("error");
    }
    this.#emit("error", { code: error.code, message: error.message, error });
    return error;
  }

  // ---- Before loading: WebGPU, the model's size, consent ----

  async #start() {
    this.#started = true;
    const generation = this.#generation;
    this.#setState("idle");
    this.#announce("");
    // Events wait for the code that inserted the element to finish, so a listener it adds next hears them.
    await null;
    if (generation !== this.#generation) return;
    // Without a usable GPU the model runs on the CPU, unless the page insists on the GPU (backend="webgpu").
    if (this.backend === "webgpu") {
      if (!hasWebGpu()) {
        this.#unsupported("This browser does not offer WebGPU, which this assistant needs to run a language model " +
          `on your GPU. ${BROWSERS}`);
        return;
      }
      let adapter = null;
      try {
        adapter = await navigator.gpu.requestAdapter();
      } catch {}
      if (generation !== this.#generation) return;
      if (!adapter) {
        this.#unsupported("This browser has WebGPU, but no GPU is available to it (WebGPU may be turned off, or " +
          `this GPU or driver is blocked). ${BROWSERS} Updating the graphics driver can help.`);
        return;
      }
    }
    if (!this.model) {
      this.#fail(new GemmaWebError("Unsupported", "the <gemma-chat> element has no model attribute"), { fatal: true });
      return;
    }
    let described;
    try {
      described = await this.#describe();
    } catch (e) {
      if (generation === this.#generation) this.#fail(e, { fatal: true });
      return;
    }
    if (generation !== this.#generation) return;
    this.#described = described;
    if (this.#loadPromise || this.#engine) return; // load() was called meanwhile
    if (described.stored || this.loading === "eager") {
      this.load().catch(() => {});
      return;
    }
    await this.#describeOffer(described);
    if (generation !== this.#generation || this.#loadPromise || this.#engine) return;
    this.#setState("consent");
    if (this.loading === "lazy") this.#autoload();
  }

  #unsupported(text) {
    this.#ui.unsupported.replaceChildren(h("p", {}, text));
    this.#setState("unsupported");
    this.#fail(new GemmaWebError("WebGPUUnavailable", text), { fatal: false });
  }

  /** The model's name, URL, size and mode, from the catalog or (for a plain URL) one HEAD request: no weights. */
  async #describe() {
    const model = this.model;
    if (model.startsWith("hf:") || /^https:\/\/(www\.)?(huggingface\.co|hf\.co)\//.test(model)) {
      // A Hugging Face file: the hub's API gives its commit, size and sha256 (no weights are fetched).
      const d = await describeModel(model);
      const stored = hasStorage()
        ? (await listStoredModels().catch(() => [])).find((m) => m.url === d.url && m.usable) ?? null
        : null;
      return { url: d.url, name: d.entry?.name ?? d.name, bytes: d.size, approximate: false, stored, mode: d.entry?.mode ?? null };
    }
    const catalog = await loadCatalog().catch((e) => {
      if (isCatalogId(model)) throw e;
      return { models: [] };
    });
    let entry = null;
    let url;
    if (isCatalogId(model)) {
      entry = catalog.models.find((m) => m.id === model);
      if (!entry) {
        throw new GemmaWebError("Unsupported",
          `no model "${model}" in the catalog (${catalog.models.map((m) => m.id).join(", ")})`);
      }
      url = entry.url;
    } else {
      url = new URL(model, location.href).href;
      entry = catalog.models.find((m) => m.url === url) ?? null;
    }
    const stored = hasStorage()
      ? (await listStoredModels().catch(() => [])).find((m) => m.url === url && m.usable) ?? null
      : null;
    let bytes = stored?.size ?? entry?.bytes ?? null;
    let approximate = false;
    if (bytes === null) {
      try {
        const res = await fetch(url, { method: "HEAD" });
        const length = Number(res.headers.get("Content-Length"));
        if (res.ok && length > 0) bytes = length;
      } catch {}
    }
    if (bytes === null && entry?.approxBytes) {
      bytes = entry.approxBytes;
      approximate = true;
    }
    let name = entry?.name ?? (new URL(url).pathname.split("/").pop() || url);
    try {
      name = decodeURIComponent(name);
    } catch {}
    return { url, name, bytes, approximate, stored, mode: entry?.mode ?? null };
  }

  /** The offer's text: what the model is, its size, the free storage. */
  async #describeOffer(d) {
    const ui = this.#ui;
    const size = d.bytes ? `${d.approximate ? "about " : ""}${bytesText(d.bytes)}` : null;
    ui.about.textContent = `This assistant runs a language model on your own device: ${d.name}. Nothing you type ` +
      `leaves this page. ${size ? `It needs a ${size} download first.` : "It needs a download first (the server " +
      "did not say how large)."}`;
    ui.start.textContent = d.bytes ? `Download and start (${size})` : "Download and start";
    ui.storage.textContent = "";
    ui.storage.dataset.free = "";
    if (hasStorage()) {
      const estimate = await navigator.storage.estimate?.().catch(() => null);
      const free = estimate && Number.isFinite(estimate.quota) ? Math.max(0, estimate.quota - (estimate.usage || 0)) : null;
      ui.storage.textContent = "It is kept in this browser's storage, so later visits start without downloading" +
        (free === null ? "." : ` (${bytesText(free)} free here).`) +
        (free !== null && d.bytes && free < d.bytes ? " That is not enough: free some space first." : "");
      if (free !== null) ui.storage.dataset.free = String(free);
    } else {
      ui.storage.textContent = "This browser offers no storage for it, so every visit downloads it again.";
    }
  }

  #autoload() {
    if (typeof IntersectionObserver !== "function" || this.loading === "eager") {
      this.load().catch(() => {});
      return;
    }
    this.#observer?.disconnect();
    this.#observer = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      this.#observer?.disconnect();
      this.#observer = null;
      if (this.#state === "consent") this.load().catch(() => {});
    });
    this.#observer.observe(this);
  }

  // ---- Loading ----

  /** Downloads (once) and loads the model; resolves with the engine. Also what the consent button does. */
  load() {
    if (this.#engine) return Promise.resolve(this.#engine);
    if (this.#loadPromise) return this.#loadPromise;
    if (this.#state === "unsupported") return Promise.reject(this.#error);
    const loading = this.#load();
    this.#loadPromise = loading;
    loading.catch(() => {}).finally(() => {
      if (this.#loadPromise === loading) this.#loadPromise = null;
    });
    return loading;
  }

  async #load() {
    const generation = this.#generation;
    const controller = new AbortController();
    this.#loadController = controller;
    this.#observer?.disconnect();
    this.#ui.bar.removeAttribute("value");
    this.#ui.progressText.textContent = "Starting…";
    this.#setState("loading");
    this.#announce("Loading the model…");
    const contextLength = this.#number("context-length", undefined, 1);
    let phase = null;
    let engine;
    try {
      engine = await createEngine({
        model: this.model,
        backend: this.backend,
        signal: controller.signal,
        ...(contextLength ? { contextLength } : {}),
        onProgress: (p) => {
          if (generation !== this.#generation) return;
          if (p.phase !== phase) {
            phase = p.phase;
            this.#announce({ download: "Downloading the model…", verify: "Checking the stored model…",
              load: "Loading the model…" }[phase] ?? "");
          }
          this.#showProgress(p);
          this.#emit("progress", p);
        },
      });
    } catch (e) {
      if (generation !== this.#generation) throw coded(e);
      this.#loadController = null;
      if (controller.signal.aborted) {
        // The reader cancelled: back to the offer; the store keeps what was downloaded and resumes from there.
        this.#described ??= await this.#describe().catch(() => null);
        if (this.#described) await this.#describeOffer(this.#described);
        this.#setState("consent");
        this.#announce("Loading cancelled. Starting again resumes the download.");
        throw new GemmaWebError("Aborted", "loading was cancelled");
      }
      this.#announce("");
      throw this.#fail(e, { fatal: true });
    }
    this.#loadController = null;
    if (generation !== this.#generation) {
      engine.unload().catch(() => {});
      throw new GemmaWebError("Aborted", "the model attribute changed while loading");
    }
    this.#engine = engine;
    this.#error = null;
    this.#mode = this.#modeOf(engine);
    if (engine.backend === "cpu") {
      const threads = engine.info.threads;
      this.#notes.device = `Runs on this device's CPU (${threads} thread${threads === 1 ? "" : "s"}): ` +
        `${engine.info.backendReason}.` +
        (engine.info.threadsReason ? ` One thread only: ${engine.info.threadsReason}.` : "");
      this.#renderNotes();
    }
    this.#watchDevice(engine);
    this.#notes.mode = this.#mode === "text"
      ? "This is a base model, not tuned to follow instructions: it continues a question-and-answer text, so its " +
        "answers are short and may be wrong."
      : "";
    this.#renderNotes();
    this.#setState("ready");
    this.#announce("The model is ready. Ask a question.");
    this.#emit("ready", { model: engine.model, mode: this.#mode, info: engine.info });
    return engine;
  }

  #modeOf(engine) {
    const attr = this.getAttribute("mode");
    if (attr === "chat" || attr === "text") return attr;
    return engine.catalogEntry?.mode ?? this.#described?.mode ?? guessMode(engine.info?.header?.name ?? engine.model);
  }

  #showProgress(p) {
    const ui = this.#ui;
    if (p.total > 0) {
      ui.bar.max = p.total;
      ui.bar.value = p.loaded;
    }
    const amount = `${bytesText(p.loaded)} of ${bytesText(p.total)}`;
    const rate = p.bytesPerSecond > 0 ? `, ${bytesText(p.bytesPerSecond)}/s` : "";
    const left = p.secondsLeft !== null && p.secondsLeft > 0 ? `, about ${secondsText(p.secondsLeft)} left` : "";
    ui.progressText.textContent = p.phase === "download" ? `Downloading: ${amount}${rate}${left}`
      : p.phase === "waiting"
        ? `Downloading: ${amount}; retrying in ${secondsText(p.retryInSeconds ?? 0)} (${p.reason ?? "the server is busy"})`
      : p.phase === "verify" ? `Checking the stored copy: ${amount}`
      : `Loading the weights: ${amount}${left}`;
  }

  /** The engine reloads itself after a lost GPU device (when it supports that): say so while it does. */
  #watchDevice(engine) {
    if (typeof engine.addEventListener !== "function") return;
    engine.addEventListener("devicelost", (event) => {
      if (engine !== this.#engine) return;
      this.#notes.device = "The GPU was reset; reloading the model from this browser's storage…";
      this.#renderNotes();
      this.#announce("The GPU was reset; the model is reloading.");
      this.#emit("devicelost", { message: event.detail?.message ?? "" });
    });
    engine.addEventListener("recovered", (event) => {
      if (engine !== this.#engine) return;
      const seconds = event.detail?.seconds;
      this.#notes.device = `The GPU was reset; the model was reloaded${
        Number.isFinite(seconds) ? ` in ${seconds.toFixed(1)} s` : ""}.`;
      this.#renderNotes();
      this.#announce("The model is back.");
      this.#emit("recovered", { seconds });
    });
  }

  // ---- Asking ----

  #submit() {
    if (this.#state !== "ready") return;
    const question = this.#ui.input.value.trim();
    if (!question) return;
    this.#ui.input.value = "";
    this.ask(question).catch(() => {});
  }

  /** Stops the answer being written after its current token; `done` fires with finish_reason "abort". */
  interrupt() {
    if (this.#state === "answering") this.#engine?.interrupt();
  }

  /** Forgets the conversation (the page text stays); a running answer is stopped. */
  async clear() {
    this.interrupt();
    this.#conversation++;
    this.#history = [];
    this.#ui.log.replaceChildren();
    if (this.#engine) this.#setState(this.#state);
    await this.#engine?.resetChat();
  }

  /** A misuse of ask(): said in the status line and fired as `error`. */
  #refuse(message) {
    this.#announce(message);
    return this.#fail(new GemmaWebError("Unsupported", message), { fatal: false });
  }

  /**
   * Asks `question` as the reader would: the question and the streamed answer appear in the widget. Resolves with
   * `{ text, finish_reason, usage }` (also the `done` event's detail); rejects with a GemmaWebError.
   */
  async ask(question) {
    question = String(question ?? "").trim();
    if (!question) throw this.#refuse("The question is empty.");
    if (!this.#engine && this.#loadPromise) await this.#loadPromise;
    const engine = this.#engine;
    if (!engine) throw this.#refuse("The model is not loaded yet: load() it first.");
    if (this.#state === "answering") throw this.#refuse("One question at a time: wait for the answer or interrupt() it.");
    const ui = this.#ui;
    const questionItem = h("li", { className: "question", part: "question" }, question);
    const answerItem = h("li", { className: "answer", part: "answer", "aria-busy": "true" });
    // A screen reader hears the whole answer once it is complete (aria-busy), not every streamed token.
    ui.log.append(questionItem, answerItem);
    let stopSequence = false;
    const conversation = this.#conversation;
    this.#setState("answering");
    this.#announce("");
    ui.log.scrollTop = ui.log.scrollHeight;

    let shown = "";
    let raw = "";
    const show = (text) => {
      if (!text) return;
      const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 24;
      shown += text;
      answerItem.textContent = shown;
      if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
      this.#emit("token", { text });
    };
    try {
      const context = await this.#contextFor(engine);
      let history = this.#history;
      let last;
      let filter;
      for (;;) {
        filter = new AnswerFilter(this.#mode === "text" ? TEXT_MODE_STOPS : []);
        raw = "";
        const request = {
          ...this.#request(question, context, history),
          max_tokens: this.maxTokens,
          stream: true,
          ...(this.temperature === undefined ? {} : { temperature: this.temperature }),
        };
        try {
          const chunks = this.#mode === "text"
            ? await engine.completions.create(request)
            : await engine.chat.completions.create(request);
          for await (const chunk of chunks) {
            last = chunk;
            const choice = chunk.choices[0];
            const piece = (this.#mode === "text" ? choice?.text : choice?.delta?.content) ?? "";
            if (!piece) continue;
            raw += piece;
            show(filter.push(piece));
            // The engine stops only at its own stop tokens; a base model's stop sequence ends it from here.
            if (filter.stopped && !stopSequence) {
              stopSequence = true;
              engine.interrupt();
            }
          }
          break;
        } catch (e) {
          // The conversation outgrew the context: forget the oldest exchange and ask again.
          if (coded(e).code === "PromptTooLong" && history.length > 0 && !raw) {
            history = history.slice(1);
            continue;
          }
          throw e;
        }
      }
      show(filter.end());
      if (conversation === this.#conversation) this.#history = [...history, { question, answer: shown, raw }];
      const finish = stopSequence ? "stop" : last?.choices[0]?.finish_reason ?? "stop";
      answerItem.setAttribute("aria-busy", "false");
      answerItem.dataset.finish = finish;
      if (this.#engine === engine) this.#setState("ready");
      if (finish === "abort") this.#announce("Stopped.");
      const detail = { text: shown, finish_reason: finish, usage: last?.usage ?? null };
      this.#emit("done", detail);
      return detail;
    } catch (e) {
      const error = coded(e);
      // The model was unloaded under this answer (the element removed, or its model changed): nothing to report.
      if (this.#engine !== engine) throw new GemmaWebError("Aborted", "the model was unloaded");
      answerItem.setAttribute("aria-busy", "false");
      answerItem.classList.add("failed");
      answerItem.textContent = `${shown ? `${shown}\n` : ""}${FRIENDLY[error.code] ?? "The answer failed."} ` +
        `${error.message} (${error.code})`;
      // A lost device or exhausted memory leaves no usable engine: offer to load again.
      if (error.code === "DeviceLost" || error.code === "OutOfMemory") {
        const dead = this.#engine;
        this.#engine = null;
        dead?.unload().catch(() => {});
        throw this.#fail(error, { fatal: true });
      }
      this.#setState("ready");
      throw this.#fail(error, { fatal: false });
    }
  }

  /** The engine request for `question`: chat messages, or a Question/Answer text for a base model. */
  #request(question, context, history) {
    let system = this.system.trim() ||
      (context ? "You answer the reader's questions about the page below, briefly and only from it." : "");
    if (context) system += `\n\nThe page:\n${context}`;
    if (this.#mode === "text") {
      const turns = history.map((t) => `Question: ${t.question}\nAnswer: ${t.answer}\n\n`).join("");
      return { prompt: `${system ? `${system}\n\n` : ""}${turns}Question: ${question}\nAnswer:` };
    }
    const messages = system ? [{ role: "system", content: system }] : [];
    for (const t of history) {
      messages.push({ role: "user", content: t.question }, { role: "assistant", content: t.raw });
    }
    messages.push({ role: "user", content: question });
    return { messages };
  }

  /**
   * The text of the `context-selector` element, cut to what fits the context next to the system text, the answer
   * (max-tokens) and the question; measured with the model's own tokenizer. Cached while the page text is the same.
   */
  async #contextFor(engine) {
    const selector = this.contextSelector;
    if (!selector) return "";
    let target = null;
    try {
      target = this.getRootNode().querySelector?.(selector) ?? this.ownerDocument.querySelector(selector);
    } catch {}
    if (!target) {
      this.#notes.context = `No element matches context-selector="${selector}": answering without the page's text.`;
      this.#renderNotes();
      return "";
    }
    const text = (target.innerText ?? target.textContent ?? "")
      .replace(/[ \t\u00a0]+/g, " ")
      .replace(/\s*\n\s*(\n\s*)+/g, "\n\n")
      .trim();
    const systemTokens = (await engine.tokenize(this.system, { addBos: false })).length;
    const room = engine.info.contextLength - this.maxTokens - QUESTION_ROOM - systemTokens;
    const budget = Math.min(room, this.#number("context-tokens", Infinity, 0));
    const key = `${budget}\u0000${text}`;
    if (this.#pageContext.key === key) return this.#pageContext.text;
    let fitted = "";
    if (budget >= MIN_PAGE_TOKENS && text) {
      const count = async (s) => (await engine.tokenize(s, { addBos: false })).length;
      if ((await count(text)) <= budget) {
        fitted = text;
      } else {
        // The longest prefix that fits: binary search on characters (no token is longer than 16 characters once
        // whitespace runs are collapsed, so the search starts below budget * 16).
        let lo = 0;
        let hi = Math.min(text.length, budget * 16);
        while (lo < hi) {
          const mid = Math.ceil((lo + hi) / 2);
          if ((await count(text.slice(0, mid) + " …")) <= budget) lo = mid;
          else hi = mid - 1;
        }
        const cut = text.slice(0, lo);
        const space = cut.search(/\s\S*$/);
        fitted = `${space > lo / 2 ? cut.slice(0, space) : cut} …`;
      }
    }
    const share = text ? Math.round((100 * Math.min(fitted.length, text.length)) / text.length) : 0;
    this.#pageContext = { key, text: fitted };
    this.#notes.context = !text ? `The element "${selector}" has no text.`
      : !fitted ? "The model's context is too small for the page's text: answering without it."
      : fitted === text ? "" : `Reads the first ${share}% of the page (what fits the model's context).`;
    this.#renderNotes();
    return fitted;
  }

  #renderNotes() {
    const { mode, context, device } = this.#notes;
    this.#ui.note.textContent = [device, context, mode].filter(Boolean).join(" ");
    this.#ui.note.hidden = !this.#ui.note.textContent;
  }
}

if (typeof customElements !== "undefined" && !customElements.get("gemma-chat")) {
  customElements.define("gemma-chat", GemmaChatElement);
}
