// Shared set-up of the browser tests: `gemma-web serve` on a free port of 127.0.0.1 and headless
// Debian Chromium with the developers' guide's flags, torn down by `after` even when a test failed.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, "target");
export const serverBin = process.env.GEMMA_WEB_BIN || path.join(targetDir, "debug", "gemma-web");
export const outDir = path.join(root, "tests", "out");
export const MODEL = "gemma-3-270m-q4_k_m.gguf";
export const MODEL_BYTES = 253_113_024;
// The developers' guide's flags; playwright adds --headless, and the user data dir is a fresh profile.
export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--enable-unsafe-webgpu",
];

/** Steps run in reverse order by `runCleanup` (call it from `after`). */
export const cleanup = [];

export async function runCleanup() {
  for (const step of cleanup.reverse()) await step();
  cleanup.length = 0;
}

/** Starts `gemma-web serve` on a port the OS picks (extra `args`, e.g. test hooks) and resolves with its URL. */
export async function startServer(models = "models", args = []) {
  const server = spawn(serverBin, ["serve", "--port", "0", "--www", "www", "--models", models, ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanup.push(() => server.kill());
  let log = "";
  server.stderr.on("data", (d) => (log += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 30 s:\n${log}`)), 30_000);
    server.stdout.on("data", (d) => {
      log += d;
      const m = log.match(/serving (http:\/\/127\.0\.0\.1:\d+\/)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${serverBin} exited with ${code}:\n${log}`));
    });
  });
  // The URL is printed after binding; still, wait until a request really succeeds.
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url)).ok) break;
    } catch (e) {
      if (i > 50) throw e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return url;
}

/**
 * `gemma-web serve` logging every model request to its own file (the --log-requests hook): `log()` reads the
 * entries so far ({ method, path, range, status, bytes }), `settledLog()` once the log stops growing.
 */
export async function startLoggedServer(models = "models", args = []) {
  const dir = await mkdtemp(path.join(tmpdir(), "gemma-web-requests-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "requests.jsonl");
  const url = await startServer(models, ["--log-requests", file, ...args]);
  const log = async () => {
    let text = "";
    try {
      text = await readFile(file, "utf8");
    } catch {}
    return text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  };
  return { url, log, settledLog: () => settledLog(log) };
}

/** Entries once the log has stopped growing (a cut or closed connection is logged when the server notices). */
export async function settledLog(log) {
  let prev = -1;
  for (;;) {
    const entries = await log();
    if (entries.length === prev) return entries;
    prev = entries.length;
    await new Promise((r) => setTimeout(r, 700));
  }
}

/** Model body bytes the server sent, from log entries. */
export const sentBytes = (entries) => entries.filter((e) => e.method === "GET").reduce((n, e) => n + e.bytes, 0);

/** Headless Chromium with a fresh profile. */
export async function launchBrowser(options = {}) {
  const profile = await mkdtemp(path.join(tmpdir(), "gemma-web-chromium-"));
  cleanup.push(() => rm(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
    ...options,
  });
  cleanup.push(() => context.close());
  return context;
}

export const MODEL_PATH = path.join(root, "models", MODEL);

/** Registers a cleanup step (run by `runCleanup`, last registered first). */
export function onCleanup(step) {
  cleanup.push(step);
}

/** A new tab of `context` that records uncaught page errors. */
export async function newPage(context) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, errors };
}

/**
 * The native engine's answer for the same request (`gemma-web generate --json` on lavapipe): an independent run,
 * whose last stdout line is { prompt_ids, generated_ids, text, ... }.
 */
export async function nativeGenerate(args) {
  const { stdout } = await promisify(execFile)(serverBin, ["generate", "--model", MODEL_PATH, "--json", ...args], {
    cwd: root,
    env: { XDG_RUNTIME_DIR: "/tmp/xdg", ...process.env },
    maxBuffer: 16 << 20,
    timeout: 600_000,
  });
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}
