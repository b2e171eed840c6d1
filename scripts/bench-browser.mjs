// gemma-web's side of scripts/bench-browser.sh: the CPU engine in headless Chromium on wllama's benchmark (Gemma 3
// 270M Q4_K_M, the chat prompt "Write a haiku about the sea." (17 tokens with BOS), 32 new tokens greedy, context 512,
// the prompt run afresh each time), on 1 and on 2 threads. Each repetition is a fresh browser profile: the model is
// downloaded into the page's storage and loaded, answered twice ("cold", then "warm" after resetChat so nothing is
// reused), then the page is reloaded and the model loaded again from storage and answered once: the time from the
// reload to the first token. Prints one JSON line per thread count; progress on stderr.
// Usage: node scripts/bench-browser.mjs <base URL of gemma-web serve>   env: REPS (3), THREADS (1,2), IDLE_WAIT_S (90)
import { chromium } from "../tests/node_modules/playwright-core/index.mjs";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.argv[2];
const REPS = +(process.env.REPS || 3);
const THREADS = (process.env.THREADS || "1,2").split(",").map(Number);
const FLAGS = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
  "--metrics-recording-only", "--no-default-browser-check"];
const err = (...a) => console.error("[bench-browser]", ...a);
const median = (a) => {
  const b = a.filter((x) => typeof x === "number" && isFinite(x)).sort((x, y) => x - y);
  if (!b.length) return null;
  const m = b.length >> 1;
  return b.length % 2 ? b[m] : (b[m - 1] + b[m]) / 2;
};
const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const readStat = () => {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: f[3] + (f[4] || 0), total: f.reduce((a, b) => a + b, 0) };
};
async function cpuBusy(ms = 1000) {
  const a = readStat();
  await sleep(ms);
  const b = readStat();
  return Math.round((1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)) * 100) / 100;
}
let idleBudget = +(process.env.IDLE_WAIT_S ?? 90) * 1000;
async function waitIdle(tag) {
  let busy = await cpuBusy();
  if (busy > 0.15 && idleBudget > 0) err(`${tag}: background CPU busy ${busy}, waiting`);
  while (busy > 0.15 && idleBudget > 0) {
    const t = Date.now();
    await sleep(2000);
    busy = await cpuBusy();
    idleBudget -= Date.now() - t;
  }
  return busy;
}

/** In the page: load (from the network into storage, or from storage), then answer `runs` times. */
async function inPage({ threads, runs }) {
  const { createEngine } = await import("/gemma-web.js");
  const t0 = performance.now();
  const engine = await createEngine({ model: "gemma-3-270m", backend: "cpu", threads, contextLength: 512 });
  const loadS = (performance.now() - t0) / 1000;
  const request = {
    messages: [{ role: "user", content: "Write a haiku about the sea." }],
    max_tokens: 32, temperature: 0, stream: true,
  };
  const answers = [];
  for (let i = 0; i < runs; i++) {
    await engine.resetChat();
    const t1 = performance.now();
    let first = null;
    let usage = null;
    let text = "";
    let ids = null;
    for await (const chunk of await engine.chat.completions.create(request)) {
      const piece = chunk.choices[0]?.delta?.content ?? "";
      if (piece && first === null) first = performance.now();
      text += piece;
      if (chunk.usage) usage = chunk.usage;
      if (chunk.gemma?.generated_ids) ids = chunk.gemma.generated_ids;
    }
    answers.push({ ttft_s: (first - t1) / 1000, since_load_start_s: (first - t0) / 1000, usage, text, ids });
  }
  const info = { backend: engine.info.backend, threads: engine.info.threads, stored: engine.info.stored ?? null };
  await engine.unload();
  return { load_s: loadS, answers, info };
}

async function rep(threads) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "gemma-web-bench-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROME || "/usr/bin/chromium", headless: true, args: FLAGS, timeout: 60_000,
    });
    const page = context.pages()[0] || (await context.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(new URL("gemma-web.js", base).href);
    const fresh = await page.evaluate(inPage, { threads, runs: 2 });
    // A second visit: the model is in the page's storage now.
    await page.reload();
    const again = await page.evaluate(inPage, { threads, runs: 1 });
    const ua = await page.evaluate(() => navigator.userAgent);
    return { ok: errors.length === 0, errors, fresh, again, ua };
  } catch (e) {
    return { ok: false, error: String(e.message ?? e).split("\n")[0] };
  } finally {
    await context?.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

for (const threads of THREADS) {
  const runs = [];
  for (let i = 0; i < REPS; i++) {
    const bg = await waitIdle(`${threads} thread(s) rep ${i + 1}`);
    const r = await rep(threads);
    r.bg_busy_before = bg;
    if (r.ok) {
      const [cold, warm] = r.fresh.answers;
      const re = r.again.answers[0];
      err(`${threads} thread(s) rep ${i + 1}: bg ${bg}  load ${r.fresh.load_s.toFixed(2)} s  prefill ` +
        `${warm.usage.prefill_tok_s.toFixed(1)} tok/s  decode ${warm.usage.decode_tok_s.toFixed(2)} tok/s (cold ` +
        `${cold.usage.prefill_tok_s.toFixed(1)}/${cold.usage.decode_tok_s.toFixed(2)})  reload: load ` +
        `${r.again.load_s.toFixed(2)} s, first token ${re.since_load_start_s.toFixed(2)} s`);
    } else {
      err(`${threads} thread(s) rep ${i + 1}: FAILED ${r.error ?? r.errors.join("; ")}`);
    }
    runs.push(r);
  }
  const ok = runs.filter((r) => r.ok);
  if (!ok.length) {
    console.log(JSON.stringify({ engine: "gemma-web", build: `cpu-${threads}t`, ok: false, error: runs[0]?.error ?? runs[0]?.errors }));
    continue;
  }
  const warm = (r) => r.fresh.answers[1];
  const cold = (r) => r.fresh.answers[0];
  const reload = (r) => r.again.answers[0];
  const first = ok[0];
  const texts = new Set(ok.flatMap((r) => [cold(r).text, warm(r).text, reload(r).text]));
  console.log(JSON.stringify({
    engine: "gemma-web", build: `cpu-${threads}t`, ok: true,
    load_s: r3(median(ok.map((r) => r.fresh.load_s))),
    prefill_tok_s: r3(median(ok.map((r) => warm(r).usage.prefill_tok_s))),
    decode_tok_s: r3(median(ok.map((r) => warm(r).usage.decode_tok_s))),
    text: warm(first).text,
    token_ids: warm(first).ids,
    cold_prefill_tok_s: r3(median(ok.map((r) => cold(r).usage.prefill_tok_s))),
    cold_decode_tok_s: r3(median(ok.map((r) => cold(r).usage.decode_tok_s))),
    js_ttft_s: r3(median(ok.map((r) => warm(r).ttft_s))),
    // A second visit: from the reload's createEngine (the model in storage) to the first streamed token.
    reload_load_s: r3(median(ok.map((r) => r.again.load_s))),
    reload_ttft_s: r3(median(ok.map((r) => reload(r).since_load_start_s))),
    n_prompt_tokens: warm(first).usage.prompt_tokens, n_new_tokens: warm(first).usage.completion_tokens,
    threads: first.fresh.info.threads, backend: first.fresh.info.backend,
    reload_from_storage: first.again.info.stored?.fromStorage ?? null,
    deterministic: texts.size === 1, reps: ok.length, reps_failed: runs.length - ok.length,
    per_rep: ok.map((r) => ({ load_s: r3(r.fresh.load_s), prefill: r3(warm(r).usage.prefill_tok_s),
      decode: r3(warm(r).usage.decode_tok_s), reload_ttft_s: r3(reload(r).since_load_start_s),
      bg_cpu_busy_before: r.bg_busy_before })),
    browser: (first.ua.match(/HeadlessChrome\/[\d.]+/) || [first.ua])[0],
  }));
}
