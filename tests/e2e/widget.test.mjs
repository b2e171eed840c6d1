// The <gemma-chat> element (www/gemma-chat.js) in headless Chromium against `gemma-web serve` and the real Gemma 3
// 270M: nothing of the weights is fetched before the reader's click (counted at the server with --log-requests and
// in the page), the offer shows the size and the free storage; after the click the example docs page downloads the
// model, answers with streamed text from the page's own text and reports usage; Stop ends a long answer; a GPU reset
// is reported while the engine recovers; the widget works in an iframe under a strict Content-Security-Policy
// (loading the stored model without asking) and from another origin, as from a CDN; a browser without WebGPU still
// gets the model (on the CPU), unless the page insists on WebGPU.
// Chromium's WebGPU here is SwiftShader, a software adapter, so the widget's engine runs on the CPU ("auto").
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import {
  CHROMIUM_FLAGS, MODEL, MODEL_BYTES, launchBrowser, newPage, outDir, runCleanup, startLoggedServer,
} from "./harness.mjs";

const MODEL_PATH = `/models/${MODEL}`;
/** The server logs a model's path inside the models folder. */
const isModel = (e) => e.path.endsWith(`/${MODEL}`);
/** The strict policy of the iframe test: wasm may be compiled, nothing may be eval'd, no inline script or style. */
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'";

let url;
/** The server's model requests so far, and once they stopped coming (harness.mjs). */
let log;
let settledLog;
let context;
/** The docs page, whose widget loads once and answers in several tests. */
let docs;

before(async () => {
  ({ url, log, settledLog } = await startLoggedServer("models"));
  context = await launchBrowser({ viewport: { width: 1300, height: 1000 } });
  await context.addInitScript(recordEvents);
});

after(runCleanup);

/** Runs in every page and frame before its scripts: records the widget's events (they bubble and are composed). */
function recordEvents() {
  window.widgetEvents = [];
  for (const type of ["progress", "ready", "token", "done", "error", "devicelost", "recovered"]) {
    document.addEventListener(type, (e) => {
      if (!(e instanceof CustomEvent) || e.target?.localName !== "gemma-chat") return;
      const d = e.detail;
      const detail = type === "ready"
        ? { model: d.model, mode: d.mode, contextLength: d.info.contextLength, stored: d.info.stored }
        : type === "error" ? { code: d.code, message: d.message, isGemmaWebError: d.error?.name === "GemmaWebError" }
        : d;
      window.widgetEvents.push({ type, detail });
    }, true);
  }
  window.cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
}

const events = (target, type) =>
  target.evaluate((type) => window.widgetEvents.filter((e) => e.type === type).map((e) => e.detail), type);

/** Waits until the widget reaches one of `states`, or a state it cannot leave by itself; resolves with the state. */
async function settle(target, states, timeout) {
  const handle = await target.waitForFunction((states) => {
    const el = document.querySelector("gemma-chat");
    const s = el?.state;
    return (states.includes(s) || s === "error" || s === "unsupported") && s;
  }, states, { timeout, polling: 250 });
  const state = await handle.jsonValue();
  if (!states.includes(state)) {
    const text = await target.locator("gemma-chat .panel").innerText().catch(() => "");
    assert.fail(`the widget is "${state}", not ${states.join(" or ")}:\n${text}`);
  }
  return state;
}

const modelGets = async () => (await log()).filter((e) => isModel(e) && e.method === "GET");

test("nothing of the weights is requested before the reader's click; size and free storage are shown", { timeout: 120_000 }, async () => {
  const { page, errors } = await newPage(context);
  docs = { page, errors };
  const modelRequests = [];
  page.on("request", (r) => r.url().includes("/models/") && modelRequests.push(`${r.method()} ${r.url()}`));
  await page.goto(`${url}examples/docs-page.html`);
  await settle(page, ["consent"], 60_000);
  // Time for anything a stray timer or observer would start.
  await page.waitForTimeout(1500);

  const w = page.locator("gemma-chat");
  assert.equal(await w.getAttribute("state"), "consent");
  assert.match(await w.locator(".about").innerText(), /Gemma 3 270M.* 253\.1 MB download/);
  assert.equal(await w.locator("button.start").innerText(), "Download and start (253.1 MB)");
  // The free storage shown is what the browser reports for this origin.
  const storageText = await w.locator(".storage").innerText();
  const shown = /\(([\d.]+) (MB|GB) free here\)/.exec(storageText);
  assert.ok(shown, storageText);
  const free = await page.evaluate(async () => {
    const { quota, usage } = await navigator.storage.estimate();
    return quota - usage;
  });
  const shownBytes = Number(shown[1]) * (shown[2] === "GB" ? 1e9 : 1e6);
  assert.ok(Math.abs(shownBytes - free) <= free * 0.01 + 1e7, `shown ${shown[0]}, the browser says ${free} bytes`);
  assert.equal(await w.locator("button.start").isVisible(), true);
  assert.equal(await w.locator("textarea").isVisible(), false, "nothing to ask before the model is loaded");

  assert.deepEqual(modelRequests, [], "the page requested nothing under /models/");
  assert.deepEqual(await log(), [], "the server saw no model request");
  assert.deepEqual(await events(page, "error"), []);
  assert.deepEqual(errors, []);
});

test("a model given by URL is sized with one HEAD request; lazy loading waits until the widget is in view", { timeout: 120_000 }, async () => {
  // Not the catalog's URL (the query differs), so the widget must ask the server for the size.
  const modelUrl = `${MODEL_PATH}?widget-test`;
  const page = await context.newPage();
  await page.route(`${url}lazy.html`, (route) => route.fulfill({
    contentType: "text/html",
    body: `<!doctype html><html lang="en"><title>lazy</title><script type="module" src="/gemma-chat.js"></script>
      <p style="height: 3000px">A long page.</p>
      <gemma-chat model="${modelUrl}" loading="lazy"></gemma-chat>`,
  }));
  const before = (await log()).length;
  await page.goto(`${url}lazy.html`);
  await settle(page, ["consent"], 60_000);
  await page.waitForTimeout(1500);
  assert.equal(await page.locator("gemma-chat").getAttribute("state"), "consent", "out of view: still waiting");
  assert.equal(await page.locator("gemma-chat button.start").innerText(), "Download and start (253.1 MB)");
  const head = (await log()).slice(before);
  assert.deepEqual(head.map((e) => [e.method, e.bytes]), [["HEAD", 0]], JSON.stringify(head));

  // Scrolled into view, the download starts by itself.
  await page.locator("gemma-chat").scrollIntoViewIfNeeded();
  await page.waitForFunction(() => window.widgetEvents.some((e) => e.type === "progress"), null, { timeout: 60_000 });
  await page.evaluate(() => document.querySelector("gemma-chat").remove());
  await page.close();
  assert.ok((await settledLog()).slice(before).some((e) => e.method === "GET"), "the weights were requested once in view");
});

test("after the click the docs page's widget downloads the model, streams an answer and reports usage", { timeout: 420_000 }, async () => {
  const { page, errors } = docs;
  const w = page.locator("gemma-chat");
  // SwiftShader runs a few tokens a minute: a short answer, greedy, and only the start of the page's text.
  await page.evaluate(() => {
    const el = document.querySelector("gemma-chat");
    el.maxTokens = 3;
    el.temperature = 0;
    el.setAttribute("context-tokens", "16");
  });
  const logBefore = (await settledLog()).length;
  let t = Date.now();
  // The consent button works from the keyboard.
  await w.locator("button.start").press("Enter");
  await settle(page, ["ready"], 240_000);
  const loadSeconds = (Date.now() - t) / 1000;

  const progress = await events(page, "progress");
  const downloads = progress.filter((p) => p.phase === "download");
  assert.ok(downloads.length > 3, "download progress is reported");
  assert.deepEqual([downloads.at(-1).loaded, downloads.at(-1).total], [MODEL_BYTES, MODEL_BYTES]);
  assert.equal(progress.at(-1).phase, "load");
  assert.equal(progress.at(-1).loaded, progress.at(-1).total);
  const gets = (await settledLog()).slice(logBefore).filter((e) => isModel(e) && e.method === "GET");
  assert.equal(gets.reduce((n, e) => n + e.bytes, 0), MODEL_BYTES, "the weights crossed the network once");
  const [ready] = await events(page, "ready");
  assert.equal(ready.model, "gemma-3-270m");
  assert.equal(ready.mode, "text", "the catalog says the 270M is a base model");
  assert.equal(ready.stored.fromStorage, false);
  assert.match(await w.locator(".note").innerText(), /base model/);
  // SwiftShader is a software adapter: the widget says the model runs on the CPU, and why.
  assert.match(await w.locator(".note").innerText(), /Runs on this device's CPU \(\d+ threads?\): WebGPU offers only a software adapter/);
  // The reader clicked: focus moved on to the question box.
  assert.equal(await page.evaluate(() => document.querySelector("gemma-chat").shadowRoot.activeElement?.id), "question");

  t = Date.now();
  await page.keyboard.type("What is this page about?");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.widgetEvents.some((e) => e.type === "done" || e.type === "error"), null,
    { timeout: 360_000, polling: 500 });
  const genSeconds = (Date.now() - t) / 1000;
  assert.deepEqual(await events(page, "error"), []);
  const tokens = (await events(page, "token")).map((d) => d.text);
  const [done] = await events(page, "done");
  const answer = w.locator("li.answer");
  const shown = await answer.textContent();
  console.log(`docs page: load ${loadSeconds.toFixed(1)} s; ${JSON.stringify(shown)} in ${genSeconds.toFixed(1)} s ` +
    `(${done.usage.prompt_tokens} prompt tokens, ${done.usage.completion_tokens} generated, ${done.finish_reason})`);
  assert.ok(tokens.length >= 2, `streamed in pieces: ${JSON.stringify(tokens)}`);
  assert.equal(shown, tokens.join(""), "the answer shown is the streamed text");
  assert.equal(done.text, shown);
  assert.ok(shown.trim().length > 0);
  assert.ok(done.usage.completion_tokens > 0 && done.usage.completion_tokens <= 3, JSON.stringify(done.usage));
  assert.ok(["length", "stop"].includes(done.finish_reason), done.finish_reason);
  assert.equal(await answer.getAttribute("aria-busy"), "false");
  assert.equal(await w.locator("li.question").textContent(), "What is this page about?");
  // The question came with the start of the page: more prompt tokens than the question and template alone.
  assert.match(await w.locator(".note").innerText(), /Reads the first \d+% of the page/);
  assert.ok(done.usage.prompt_tokens > 16 + 10, JSON.stringify(done.usage));
  assert.equal(await w.locator("textarea").isDisabled(), false);

  await mkdir(outDir, { recursive: true });
  await page.screenshot({ path: path.join(outDir, "widget-docs-page.png") });
  assert.equal(await answer.isVisible(), true, "the answer is visible on the page");
  assert.equal((await answer.innerText()).trim(), shown.trim());
  console.log("screenshot tests/out/widget-docs-page.png");
  assert.deepEqual(errors, []);
});

test("Stop ends a long answer within a few tokens", { timeout: 300_000 }, async () => {
  const { page, errors } = docs;
  const w = page.locator("gemma-chat");
  await w.locator("button", { hasText: "New conversation" }).click();
  assert.equal(await w.locator("li").count(), 0, "the conversation was cleared");
  // A long answer without the page's text (a short prompt, so the test waits for tokens, not for the prefill).
  await page.evaluate(() => {
    const el = document.querySelector("gemma-chat");
    el.removeAttribute("context-selector");
    el.removeAttribute("system");
    el.maxTokens = 128;
    window.widgetEvents.length = 0;
  });
  await w.locator("textarea").fill("Tell me a story.");
  await w.locator("button.send").click();
  await page.waitForFunction(() => window.widgetEvents.some((e) => e.type === "token" || e.type === "done"), null,
    { timeout: 240_000, polling: 100 });
  assert.equal(await w.getAttribute("state"), "answering");
  await w.locator("button.stop").click();
  await page.waitForFunction(() => window.widgetEvents.some((e) => e.type === "done" || e.type === "error"), null,
    { timeout: 240_000, polling: 500 });
  assert.deepEqual(await events(page, "error"), []);
  const [done] = await events(page, "done");
  console.log(`stop: ${done.usage.completion_tokens} tokens, ${JSON.stringify(done.text)}`);
  assert.equal(done.finish_reason, "abort");
  // The CPU engine makes 20+ tokens a second here: the test's own wait for the first token and its click take a
  // few, more on a faster machine; the answer must still end far below its limit.
  assert.ok(done.usage.completion_tokens >= 1 && done.usage.completion_tokens < 64, JSON.stringify(done.usage));
  assert.equal(await w.getAttribute("state"), "ready");
  assert.equal(await w.locator("button.stop").isDisabled(), true);
  assert.equal(await w.locator("li.answer").getAttribute("data-finish"), "abort");
  assert.match(await w.locator(".status").innerText(), /Stopped/);
  assert.deepEqual(errors, []);
});

// The engine's own recovery from a lost device (a real one, on WebGPU) is tested in engine.test.mjs; here the
// engine's two events drive the widget, which runs on the CPU.
test("a GPU reset: the widget says so while the engine reloads the model, and the answer comes", { timeout: 300_000 }, async () => {
  const { page, errors } = docs;
  const w = page.locator("gemma-chat");
  const t = Date.now();
  const done = await page.evaluate(async () => {
    const el = document.querySelector("gemma-chat");
    await el.clear();
    el.maxTokens = 1;
    window.widgetEvents.length = 0;
    el.engine.dispatchEvent(new CustomEvent("devicelost", { detail: { message: "a driver reset (test)" } }));
    window.noteWhenLost = el.shadowRoot.querySelector(".note").textContent;
    el.engine.dispatchEvent(new CustomEvent("recovered", { detail: { seconds: 2.5 } }));
    return el.ask("Hi");
  });
  console.log(`device loss: answered ${JSON.stringify(done.text)} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  assert.deepEqual(await events(page, "devicelost"), [{ message: "a driver reset (test)" }]);
  assert.deepEqual(await events(page, "recovered"), [{ seconds: 2.5 }]);
  assert.match(await page.evaluate(() => window.noteWhenLost), /The GPU was reset; reloading the model/);
  assert.match(await w.locator(".note").innerText(), /the model was reloaded in 2\.5 s/);
  assert.equal(done.usage.completion_tokens, 1);
  assert.equal(await w.locator("li.answer").textContent(), done.text);
  assert.equal(await w.getAttribute("state"), "ready");
  assert.deepEqual(await events(page, "error"), []);
  assert.deepEqual(errors, []);
});

test("in an iframe under a strict Content-Security-Policy the stored model loads without asking and answers", { timeout: 300_000 }, async () => {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const routed = new Set();
  // Every response of this page (the frame, the modules, the worker, the wasm) carries the policy; the outer page
  // is another document without one.
  await page.route("**/*", async (route) => {
    const u = new URL(route.request().url());
    if (u.pathname.startsWith("/models/")) return route.continue();
    routed.add(u.pathname);
    if (u.pathname === "/csp/outer.html") {
      return route.fulfill({
        contentType: "text/html",
        body: `<!doctype html><html lang="en"><title>host</title><h1>A page with an assistant in a frame</h1>
          <iframe src="/csp/frame.html" title="Assistant" width="520" height="560"></iframe>`,
      });
    }
    if (u.pathname === "/csp/frame.html") {
      return route.fulfill({
        contentType: "text/html",
        headers: { "content-security-policy": CSP },
        body: `<!doctype html><html lang="en"><title>assistant</title>
          <script type="module" src="/csp/probe.js"></script>
          <script type="module" src="/gemma-chat.js"></script>
          <gemma-chat model="gemma-3-270m" max-tokens="1" temperature="0"></gemma-chat>`,
      });
    }
    if (u.pathname === "/csp/probe.js") {
      // A script of the frame's own, to show that eval is refused there (code the test evaluates through the
      // DevTools protocol is exempt from the policy, so the probe must be the page's).
      return route.fulfill({
        contentType: "text/javascript",
        headers: { "content-security-policy": CSP },
        body: `let r; try { r = String(eval("1 + 1")); } catch (e) { r = e.name; }
          document.documentElement.dataset.evalProbe = r;`,
      });
    }
    const response = await route.fetch();
    return route.fulfill({ response, headers: { ...response.headers(), "content-security-policy": CSP } });
  });
  const getsBefore = (await modelGets()).length;
  await page.goto(`${url}csp/outer.html`);
  const frame = page.frameLocator("iframe");
  const f = page.frames().find((x) => x.url().endsWith("/csp/frame.html"));
  assert.ok(f, "the frame loaded");
  await settle(f, ["ready"], 180_000);

  // The policy is in force in the frame: eval is refused, an inline script does not run, an inline style does not
  // apply.
  const enforced = await f.evaluate(() => {
    const script = document.createElement("script");
    script.textContent = "window.inlineRan = true;";
    const style = document.createElement("style");
    style.textContent = "#csp-probe { width: 123px; }";
    const probe = document.createElement("div");
    probe.id = "csp-probe";
    document.body.append(script, style, probe);
    return {
      evalProbe: document.documentElement.dataset.evalProbe,
      inlineRan: window.inlineRan === true,
      inlineStyleWidth: getComputedStyle(probe).width,
    };
  });
  assert.deepEqual(enforced.evalProbe, "EvalError");
  assert.equal(enforced.inlineRan, false);
  assert.notEqual(enforced.inlineStyleWidth, "123px");
  // ... and the widget's own styles apply all the same (a constructable stylesheet).
  assert.equal(await frame.locator("gemma-chat .panel").evaluate((el) => getComputedStyle(el).borderTopLeftRadius), "12px");

  const [ready] = await events(f, "ready");
  assert.equal(ready.stored.fromStorage, true, "the model came from the browser's storage");
  assert.equal((await modelGets()).length, getsBefore, "no weight crossed the network");
  // The worker's script and the wasm came with the policy too: the wasm was compiled under it.
  for (const p of ["/gemma-chat.js", "/worker.js", "/pkg/gemma_web_bg.wasm"]) assert.ok(routed.has(p), `${p} routed`);

  const done = await f.evaluate(() => document.querySelector("gemma-chat").ask("Hi"));
  assert.equal(done.usage.completion_tokens, 1);
  assert.equal(await frame.locator("gemma-chat li.answer").textContent(), done.text);
  const violations = await f.evaluate(() => window.cspViolations);
  // Only the three probes were refused; nothing of the widget or the engine was.
  assert.deepEqual(violations.filter((v) => !/^(script-src|script-src-elem|style-src-elem)$/.test(v)), [], violations.join(", "));
  assert.ok(violations.length <= 3, `only the three probes were blocked: ${violations.join(", ")}`);
  assert.deepEqual(await events(f, "error"), []);
  assert.deepEqual(errors, []);
  await page.close();
});

test("a page on another origin embeds the widget from this one, as from a CDN", { timeout: 240_000 }, async () => {
  // The page is at http://localhost:PORT, the scripts at http://127.0.0.1:PORT (the "CDN", with CORS as CDNs send
  // it); the model is the page's own. localhost is another origin, so its storage is empty: the offer shows first.
  const cdn = new URL(url);
  const site = new URL(url);
  site.hostname = "localhost";
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.route("**/*", async (route) => {
    const u = new URL(route.request().url());
    if (u.origin === site.origin && u.pathname === "/docs.html") {
      return route.fulfill({
        contentType: "text/html",
        body: `<!doctype html><html lang="en"><title>docs</title>
          <script type="module" src="${cdn.origin}/gemma-chat.js"></script>
          <main><p>The frobnicator turns widgets blue.</p></main>
          <gemma-chat model="${site.origin}${MODEL_PATH}" context-selector="main"></gemma-chat>`,
      });
    }
    if (u.origin !== cdn.origin) return route.continue();
    const response = await route.fetch();
    const headers = { ...response.headers(), "access-control-allow-origin": "*" };
    delete headers["cross-origin-resource-policy"];
    return route.fulfill({ response, headers });
  });
  await page.goto(`${site.origin}/docs.html`);
  await settle(page, ["consent"], 60_000);
  await page.locator("gemma-chat button.start").click();
  await settle(page, ["ready"], 180_000);
  const [ready] = await events(page, "ready");
  assert.equal(ready.stored.fromStorage, false);
  assert.equal(ready.stored.url, `${site.origin}${MODEL_PATH}`);
  // The engine's worker runs for the page's origin: its storage is the page's.
  const stored = await page.evaluate(async () => (await import(document.querySelector("script").src.replace(
    "gemma-chat.js", "gemma-web.js"))).listStoredModels());
  assert.deepEqual(stored.filter((m) => m.usable).map((m) => m.url), [ready.stored.url]);
  assert.deepEqual(await events(page, "error"), []);
  assert.deepEqual(errors, []);
  await page.close();
});

test("an unknown model id shows an error with its code and fires error", { timeout: 60_000 }, async () => {
  const page = await context.newPage();
  await page.route(`${url}bad.html`, (route) => route.fulfill({
    contentType: "text/html",
    body: `<!doctype html><html lang="en"><title>bad</title><script type="module" src="/gemma-chat.js"></script>
      <gemma-chat model="no-such-model"></gemma-chat>`,
  }));
  await page.goto(`${url}bad.html`);
  await page.locator('gemma-chat[state="error"]').waitFor({ state: "attached", timeout: 30_000 });
  const [error] = await events(page, "error");
  assert.deepEqual([error.code, error.isGemmaWebError], ["Unsupported", true]);
  const alert = page.locator("gemma-chat [role=alert]");
  assert.match(await alert.innerText(), /no model "no-such-model" in the catalog/);
  assert.match(await alert.innerText(), /Error code: Unsupported/);
  await page.close();
});

test("without WebGPU the widget runs the model on the CPU; a page that insists on WebGPU gets the unsupported state", { timeout: 240_000 }, async () => {
  // A browser started without --enable-unsafe-webgpu: navigator.gpu is missing, or it offers no adapter.
  const bare = await launchBrowser({ args: CHROMIUM_FLAGS.filter((f) => f !== "--enable-unsafe-webgpu") });
  await bare.addInitScript(recordEvents);
  const { page, errors } = await newPage(bare);
  await page.goto(`${url}examples/docs-page.html`);
  const webgpu = await page.evaluate(async () => {
    if (!("gpu" in navigator)) return "no navigator.gpu";
    return (await navigator.gpu.requestAdapter().catch(() => null)) ? "adapter" : "no adapter";
  });
  console.log(`without the flag: ${webgpu}`);
  assert.notEqual(webgpu, "adapter", "this Chromium offers WebGPU without the flag: the test cannot check the state");
  // The usual offer, then the model on the CPU, answering.
  await settle(page, ["consent"], 30_000);
  const w = page.locator("gemma-chat");
  assert.match(await w.locator(".intro").innerText(), /on your own device/);
  await w.locator("button.start").click();
  await settle(page, ["ready"], 180_000);
  const done = await page.evaluate(async () => {
    const el = document.querySelector("gemma-chat");
    el.maxTokens = 1;
    el.temperature = 0;
    el.removeAttribute("context-selector");
    return el.ask("Hi");
  });
  assert.equal(done.usage.backend, "cpu");
  assert.equal(done.usage.completion_tokens, 1);
  assert.match(await w.locator(".note").innerText(), /Runs on this device's CPU \(\d+ threads?\): no usable WebGPU/);
  assert.deepEqual(await events(page, "error"), []);
  assert.deepEqual(errors, []);
  await mkdir(outDir, { recursive: true });
  await page.screenshot({ path: path.join(outDir, "widget-no-webgpu.png") });

  // backend="webgpu": the page wants the GPU, so the widget says which browser to use and offers no download.
  const insist = `<!doctype html><html lang="en"><title>webgpu only</title>
    <script type="module" src="/gemma-chat.js"></script><gemma-chat model="gemma-3-270m" backend="webgpu"></gemma-chat>`;
  for (const [target, why] of [[await bare.newPage(), null], [await context.newPage(), "no navigator.gpu"]]) {
    // The second case: navigator.gpu missing altogether in a browser that has the flag.
    if (why) await target.addInitScript(() => delete Navigator.prototype.gpu);
    await target.route(`${url}webgpu-only.html`, (route) => route.fulfill({ contentType: "text/html", body: insist }));
    await target.goto(`${url}webgpu-only.html`);
    await settle(target, ["unsupported"], 30_000);
    const text = await target.locator("gemma-chat .unsupported").innerText();
    assert.match(text, (why ?? webgpu) === "no navigator.gpu" ? /does not offer WebGPU/ : /no GPU is available/);
    assert.match(text, /Chrome or Edge/);
    assert.equal(await target.locator("gemma-chat button.start").isVisible(), false);
    assert.deepEqual((await events(target, "error")).map((e) => e.code), ["WebGPUUnavailable"]);
    await target.close();
  }
});
