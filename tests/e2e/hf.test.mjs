// Downloads from Hugging Face as it really behaves, against a two-origin stand-in (tests/e2e/hf-standin.mjs: the hub
// with its APIs and 302s, a CDN with signed URLs, its published CORS headers and changing ETags) while the page comes
// from `gemma-web serve` on a third origin. The real Gemma 3 270M loads by an hf: name through every fault at once (a
// 429 with Retry-After, a 503, a connection cut mid-body, a signed URL that expires), generates the native engine's
// greedy token, and loads again after a reload with no model byte fetched. The store fixture (www/test/store.html)
// covers a wrong sha256 from the API, a resume after a reload, a moved revision and a host that ignores ranges.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { cdnBytes, startHfStandIn } from "./hf-standin.mjs";
import { launchBrowser, MODEL, MODEL_BYTES, MODEL_PATH, nativeGenerate, newPage, onCleanup, runCleanup, startServer } from "./harness.mjs";

const MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
const CHUNK = 16 << 20;
const REPO = "gemma-web-test/gemma-3-270m-GGUF";
const HF_NAME = `hf:${REPO}/${MODEL}`;
const commit = (c) => c.repeat(40);

let context;
let pageUrl;
let tmp;

before(async () => {
  pageUrl = await startServer();
  context = await launchBrowser();
  tmp = await mkdtemp(path.join(tmpdir(), "gemma-web-hf-"));
  onCleanup(() => rm(tmp, { recursive: true, force: true }));
});

after(runCleanup);

async function standIn(repos) {
  const s = await startHfStandIn(repos);
  onCleanup(() => s.close());
  return s;
}

const since = (log, n) => log.slice(n);
const resolves = (entries) => entries.filter((e) => e.host === "hub" && e.path.includes("/resolve/"));
const apiCalls = (entries) => entries.filter((e) => e.host === "hub" && e.path.startsWith("/api/"));

/** No request reached the CDN with a header that needs a preflight (the CDN refuses If-Range there). */
function assertNoPreflight(entries) {
  const cdn = entries.filter((e) => e.host === "cdn");
  assert.deepEqual(cdn.filter((e) => e.method === "OPTIONS").map((e) => e.preflightHeaders), [], "no preflight to the CDN");
  assert.deepEqual(cdn.filter((e) => e.ifRange), [], "no If-Range to the CDN");
}

test("an hf: name loads the real 270M through every fault at once; after a reload it fetches nothing and gives the native greedy token", { timeout: 600_000 }, async () => {
  const hf = await standIn({
    [REPO]: { commit: commit("c"), license: "gemma", files: { [MODEL]: { disk: MODEL_PATH, sha256: MODEL_SHA256 } } },
  });
  // Every fault in one download: the first /resolve/ is rate limited, the third CDN request answers 503, the
  // connection drops in the middle of a chunk, and after 8 CDN requests every signed URL has expired.
  Object.assign(hf.faults, { resolve429: 1, retryAfter: 1, cdn503At: 3, dropAt: 100_000_123, expireAfter: 8 });
  const faults = 4;
  const { page, errors } = await newPage(context);
  await page.goto(`${pageUrl}gemma-web.js`);
  const PROMPT = "The capital of France is";
  const native = await nativeGenerate(["--prompt", PROMPT, "--max-tokens", "1", "--context", "64", "--backend", "cpu"]);

  // Loads by name; with `prompt`, streams one greedy token and times it from the call of createEngine.
  const load = ({ name, hub, prompt }) => page.evaluate(async ({ name, hub, prompt }) => {
    const { createEngine } = await import("/gemma-web.js");
    const progress = [];
    const t0 = performance.now();
    const engine = await createEngine({ model: name, hfEndpoint: hub, contextLength: 64, onProgress: (p) => progress.push(p) });
    const loadSeconds = (performance.now() - t0) / 1000;
    let firstTokenSeconds = null;
    let last = null;
    if (prompt) {
      const chunks = await engine.completions.create({ prompt, max_tokens: 1, temperature: 0, stream: true });
      for await (const chunk of chunks) {
        if (chunk.choices[0].text && firstTokenSeconds === null) firstTokenSeconds = (performance.now() - t0) / 1000;
        last = chunk;
      }
    }
    await engine.unload();
    return { progress, loadSeconds, firstTokenSeconds, gemma: last?.gemma, stored: engine.info.stored };
  }, { name, hub, prompt });

  // The download with every fault; the engine loads it (the token is generated after the reload below, once).
  const first = await load({ name: HF_NAME, hub: hf.hub, prompt: null });
  assert.equal(first.stored.fromStorage, false);
  assert.equal(first.stored.sha256, MODEL_SHA256);
  assertNoPreflight(hf.log);
  const sent = cdnBytes(hf.log);
  const cdnGets = hf.log.filter((e) => e.host === "cdn" && e.method === "GET");
  // The cut connection: the CDN wrote bytes up to `wrote`; the client resumed where its last stored byte ended (what
  // was still in the sockets' buffers when the connection went is sent again).
  const cut = cdnGets.findIndex((e) => e.dropped);
  const wrote = Number(/^bytes=(\d+)-/.exec(cdnGets[cut].range)[1]) + cdnGets[cut].bytes;
  const resumedAt = Number(/^bytes=(\d+)-/.exec(cdnGets.slice(cut + 1).find((e) => e.status === 206).range)[1]);
  console.log(`hf download: ${sent} CDN bytes for a ${MODEL_BYTES}-byte file with ${faults} faults ` +
    `(${sent - MODEL_BYTES} extra: 0 for the 429, the 503 and the expired URL; ${wrote - resumedAt} for the cut ` +
    `connection, cut at byte ${wrote}, resumed at ${resumedAt}), ${resolves(hf.log).length} /resolve/ requests, ` +
    `${apiCalls(hf.log).length} API calls, ${cdnGets.length} CDN requests, load ${first.loadSeconds.toFixed(1)} s`);
  assert.ok(sent >= MODEL_BYTES && sent <= MODEL_BYTES + faults * CHUNK, `${sent} bytes`);
  assert.equal(sent - MODEL_BYTES, wrote - resumedAt, "only the cut cost bytes");
  assert.equal(first.stored.fetchedBytes, MODEL_BYTES, "every byte that arrived was kept, none fetched twice");
  assert.ok(hf.log.some((e) => e.host === "cdn" && e.status === 403), "a signed URL expired");
  assert.ok(hf.log.some((e) => e.host === "cdn" && e.status === 503));
  assert.equal(resolves(hf.log).filter((e) => e.status === 429).length, 1);
  // The signed URL is reused while it works: the hub sees the 429, the first redirect and one after the expiry.
  assert.equal(resolves(hf.log).filter((e) => e.status === 302).length, 2, JSON.stringify(resolves(hf.log)));
  const waits = first.progress.filter((p) => p.phase === "waiting");
  assert.ok(waits.some((p) => p.retryInSeconds === 1 && /429/.test(p.reason)), JSON.stringify(waits));
  assert.ok(waits.some((p) => /503/.test(p.reason)) && waits.some((p) => /expired/.test(p.reason)), JSON.stringify(waits));
  assert.ok(waits.some((p) => /connection .* broke/.test(p.reason)), JSON.stringify(waits));
  const dl = first.progress.filter((p) => p.phase === "download");
  assert.deepEqual([dl.at(-1).loaded, dl.at(-1).total], [MODEL_BYTES, MODEL_BYTES]);

  // Hash once: after a reload the stored model is trusted (no re-hash) and nothing but the two API calls goes out.
  await page.reload();
  const before = hf.log.length;
  const again = await load({ name: HF_NAME, hub: hf.hub, prompt: PROMPT });
  const later = since(hf.log, before);
  console.log(`after a reload: time to first token ${again.firstTokenSeconds.toFixed(1)} s from createEngine ` +
    `(load ${again.loadSeconds.toFixed(1)} s), ${cdnBytes(later)} model bytes fetched`);
  assert.equal(cdnBytes(later), 0);
  assert.deepEqual(resolves(later), []);
  assert.equal(apiCalls(later).length, 2);
  assert.equal(again.stored.fromStorage, true);
  assert.deepEqual(again.progress.filter((p) => p.phase === "verify"), [], "no re-hash");
  assert.deepEqual(again.gemma.prompt_ids, native.prompt_ids);
  assert.deepEqual(again.gemma.generated_ids, native.generated_ids, "the native engine's greedy token");

  // Offline (the hub unreachable): the stored copy loads all the same, with no request but the failed API calls.
  hf.faults.hubDown = true;
  await page.reload();
  const offline = await load({ name: HF_NAME, hub: hf.hub, prompt: PROMPT });
  hf.faults.hubDown = false;
  console.log(`offline: time to first token ${offline.firstTokenSeconds.toFixed(1)} s from createEngine`);
  assert.equal(offline.stored.fromStorage, true);
  assert.deepEqual(offline.progress.filter((p) => p.phase === "verify"), [], "no re-hash");
  assert.deepEqual(offline.gemma.generated_ids, native.generated_ids);
  assert.deepEqual(errors, []);
});

/** The store fixture page (www/test/store.html): the store's calls in a worker, without an engine. */
async function storePage() {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(new URL("test/store.html", pageUrl).href);
  await page.evaluate(() => window.workerReady);
  const call = (op, args) => page.evaluate(([op, args]) => window.store(op, args), [op, args]);
  return { page, errors, call };
}

async function randomFile(name, size) {
  const bytes = randomBytes(size);
  const disk = path.join(tmp, name);
  await writeFile(disk, bytes);
  return { disk, sha256: createHash("sha256").update(bytes).digest("hex") };
}

test("a wrong sha256 from the hub's API is an Integrity error and nothing is stored", async () => {
  const file = await randomFile("wrong.gguf", 9_000_001);
  const hf = await standIn({
    "org/wrong-GGUF": { commit: commit("a"), files: { "m.gguf": { ...file, apiSha256: "0".repeat(64) } } },
  });
  const { call, errors, page } = await storePage();
  const r = await call("ensureHf", { name: "hf:org/wrong-GGUF/m.gguf", endpoint: hf.hub });
  assert.equal(r.error?.code, "Integrity", JSON.stringify(r));
  assert.match(r.error.message, new RegExp(`${file.sha256}, expected ${"0".repeat(64)}`));
  // (The page's origin is shared with the other tests here: only this repository's entries count.)
  assert.deepEqual((await call("list")).result.filter((m) => m.url.includes("/org/wrong-GGUF/")), [], "nothing is kept");
  assertNoPreflight(hf.log);
  assert.deepEqual(errors, []);
  await page.close();
});

test("a download resumes after a reload at the last byte stored; a moved revision starts over", async () => {
  const SIZE = 30_000_017;
  const file = await randomFile("resume.gguf", SIZE);
  const hf = await standIn({ "org/resume-GGUF": { commit: commit("1"), files: { "m.gguf": file } } });
  const name = "hf:org/resume-GGUF/m.gguf";
  // The CDN stalls at this offset (as a connection that hangs), and the page goes away.
  const visit = async (stallAt) => {
    hf.faults.stallAt = stallAt;
    const p = await storePage();
    const pending = p.call("ensureHf", { name, endpoint: hf.hub, chunkBytes: 4 << 20 });
    if (stallAt === null) return { ...p, result: await pending };
    pending.catch(() => {});
    // The progress reaches every byte that came before the hang: an update throttled in the last burst is sent late,
    // not dropped (a bar frozen short of what arrived would be wrong, and a quick burst once timed this test out).
    await p.page.waitForFunction((at) => window.progress.some((e) => e.bytesDone === at), stallAt, { polling: 50 });
    await new Promise((r) => setTimeout(r, 500));
    const list = (await p.call("list")).result.filter((m) => m.url.includes("/org/resume-GGUF/"));
    await p.page.close();
    assert.equal(list.length, 1);
    return list[0];
  };
  const partial = await visit(12_345_678);
  assert.equal(partial.state, "partial");
  assert.ok(partial.storedBytes > 0 && partial.storedBytes <= 12_345_678, `stored ${partial.storedBytes}`);
  const n = hf.log.length;
  const second = await visit(null);
  assert.equal(second.result.error, undefined, JSON.stringify(second.result));
  assert.equal(second.result.result.sha256, file.sha256);
  const resumed = since(hf.log, n).filter((e) => e.host === "cdn" && e.method === "GET");
  assert.equal(Number(/^bytes=(\d+)-/.exec(resumed[0].range)[1]), partial.storedBytes, "resumed at the last stored byte");
  assert.equal(cdnBytes(resumed), SIZE - partial.storedBytes, "only the missing bytes");
  assertNoPreflight(hf.log);
  assert.equal((await second.call("remove", { id: second.result.result.id })).error, undefined);
  await second.page.close();

  // Unpinned (main): the commit at the start is recorded; a partial of another commit is not mixed in.
  const other = await randomFile("resume2.gguf", SIZE);
  const third = await visit(9_999_999);
  assert.ok(third.storedBytes > 0);
  hf.repos["org/resume-GGUF"].commit = commit("2");
  hf.repos["org/resume-GGUF"].files["m.gguf"] = { ...other, size: SIZE };
  const m = hf.log.length;
  const fourth = await visit(null);
  assert.equal(fourth.result.error, undefined, JSON.stringify(fourth.result));
  assert.equal(fourth.result.result.sha256, other.sha256);
  assert.equal(fourth.result.result.commit, commit("2"));
  const restarted = since(hf.log, m).filter((e) => e.host === "cdn" && e.method === "GET");
  assert.equal(Number(/^bytes=(\d+)-/.exec(restarted[0].range)[1]), 0, "started over");
  assert.equal(cdnBytes(restarted), SIZE);
  assert.deepEqual(fourth.errors, []);
});

test("a host that ignores Range requests is downloaded as one stream, once", async () => {
  const SIZE = 5_000_003;
  const file = await randomFile("plain.gguf", SIZE);
  const hf = await standIn({ "org/plain": { commit: commit("b"), files: { "m.gguf": file } } });
  hf.faults.ignoreRanges = true;
  const { call, errors, page } = await storePage();
  // A plain URL (no hub API): the size comes from a Range probe, answered 200.
  const r = await call("ensure", { url: `${hf.hub}/org/plain/resolve/main/m.gguf` });
  assert.equal(r.error, undefined, JSON.stringify(r));
  assert.equal(r.result.sha256, file.sha256);
  assert.equal(r.result.fetchedBytes, SIZE);
  const gets = hf.log.filter((e) => e.host === "cdn" && e.method === "GET");
  assert.deepEqual(gets.map((e) => e.status), [200, 200], "the probe, then one stream");
  assertNoPreflight(hf.log);
  assert.deepEqual(errors, []);
  await page.close();
});

/** A GGUF header of another architecture (llama), no tensors. */
function llamaGguf() {
  const str = (s) => {
    const b = Buffer.alloc(8 + s.length);
    b.writeBigUInt64LE(BigInt(s.length));
    b.write(s, 8);
    return b;
  };
  const u32 = (n) => Buffer.from(new Uint32Array([n]).buffer);
  const u64 = (n) => Buffer.from(new BigUint64Array([BigInt(n)]).buffer);
  const head = Buffer.concat([Buffer.from("GGUF"), u32(3), u64(0), u64(1), str("general.architecture"), u32(8), str("llama")]);
  return Buffer.concat([head, Buffer.alloc(96 - head.length)]);
}

test("the page's box: a pasted link shows size, license and free storage before the download; a non-Gemma GGUF is refused from its header", async () => {
  const llama = llamaGguf();
  const llamaPath = path.join(tmp, "llama.gguf");
  await writeFile(llamaPath, llama);
  const hf = await standIn({
    [REPO]: { commit: commit("d"), license: "gemma", files: { [MODEL]: { disk: MODEL_PATH, sha256: MODEL_SHA256 } } },
    "org/llama-GGUF": {
      commit: commit("e"), license: "llama3",
      files: { "llama.gguf": { disk: llamaPath, sha256: createHash("sha256").update(llama).digest("hex") } },
    },
  });
  const { page, errors } = await newPage(context);
  await page.goto(`${pageUrl}?hf-endpoint=${encodeURIComponent(hf.hub)}`);
  await page.waitForFunction(() => /ready to load/.test(document.querySelector("#status").textContent), null, { timeout: 60_000 });

  await page.fill("#model-ref", `${hf.hub}/${REPO}/blob/main/${MODEL}`);
  await page.click("#model-ref-use");
  await page.waitForFunction(() => document.querySelector("#model-select").value.startsWith("ref:") &&
    /ready to load/.test(document.querySelector("#status").textContent), null, { timeout: 60_000 });
  const info = await page.locator("#fetch-info").innerText();
  const about = await page.locator("#model-about").innerText();
  assert.match(info, /253\.1 MB, downloaded once into this browser's storage; [\d.]+ [MG]B free for it/);
  assert.match(about, new RegExp(`${REPO}, file ${MODEL}, commit dddddddddd`));
  assert.match(about, /License: gemma/);
  assert.match(await page.locator("#load").innerText(), /Load model \(253\.1 MB\)/);
  // Only the API and the header: a few Range reads, far from the model.
  const headerBytes = Number(await page.locator("#fetch-info").getAttribute("data-bytes-read"));
  assert.equal(cdnBytes(hf.log), headerBytes);
  assert.ok(headerBytes < 16 << 20, `${headerBytes} header bytes`);
  assertNoPreflight(hf.log);

  await page.fill("#model-ref", "hf:org/llama-GGUF/llama.gguf");
  await page.click("#model-ref-use");
  await page.locator("#error").waitFor({ state: "visible" });
  assert.match(await page.locator("#error").innerText(), /^Unsupported: .*architecture "llama": gemma-web runs gemma, gemma2 and gemma3/);
  assert.equal(await page.locator("#load").isDisabled(), true, "nothing to load");
  assert.equal(cdnBytes(hf.log), headerBytes + llama.length, "its header was all that was read");
  assert.deepEqual(errors, []);
});
