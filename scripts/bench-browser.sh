#!/usr/bin/env bash
# gemma-web's CPU engine against wllama (llama.cpp in wasm) in one run, in the same headless Chromium, on the same
# file (models/gemma-3-270m-q4_k_m.gguf) with wllama's benchmark settings: the chat prompt "Write a haiku about the
# sea." (17 tokens), 32 greedy tokens, context 512, median of REPS fresh browser profiles.
#   wllama:    ../shared/peers/wllama/bench.sh, configurations cpu-st (1 thread) and cpu-mt (2 threads)
#   gemma-web: scripts/bench-browser.mjs, the CPU backend on 1 and 2 threads, plus the time to the first token after
#              a reload with the model in the browser's storage
# Prints one JSON line per engine and configuration, then one line of ratios against issue 12's goals (decode >= 1.5x
# wllama's 2-thread decode, prefill >= 1x, time to first token after a reload <= wllama's). Progress on stderr.
# Needs `make wasm` (www/pkg, www/pkg-threads), the test packages (tests/node_modules) and Debian's chromium.
# env: REPS (3), GEMMA_WEB_BIN (default target/debug/gemma-web, built if missing), WLLAMA_PEER (default
#      ../shared/peers/wllama, else ../../shared/peers/wllama), IDLE_WAIT_S (90)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export REPS=${REPS:-3}
MODEL=models/gemma-3-270m-q4_k_m.gguf
[ -s "$MODEL" ] || { echo "bench-browser: $MODEL is missing (make model)" >&2; exit 1; }
for f in www/pkg/gemma_web_bg.wasm www/pkg-threads/gemma_web_bg.wasm tests/node_modules/playwright-core/index.mjs; do
  [ -e "$f" ] || { echo "bench-browser: $f is missing (make wasm test-deps)" >&2; exit 1; }
done
PEER=${WLLAMA_PEER:-}
if [ -z "$PEER" ]; then
  for p in ../shared/peers/wllama ../../shared/peers/wllama; do [ -x "$p/bench.sh" ] && { PEER=$p; break; }; done
fi
[ -n "$PEER" ] && [ -x "$PEER/bench.sh" ] || { echo "bench-browser: wllama's peer bench not found (WLLAMA_PEER)" >&2; exit 1; }
BIN=${GEMMA_WEB_BIN:-target/debug/gemma-web}
[ -x "$BIN" ] || cargo build -p gemma-web --bin gemma-web >&2

OUT=$(mktemp -d)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT

echo "[bench-browser] wllama ($PEER), loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
MODEL_SRC=$MODEL CONFIGS=cpu-st,cpu-mt "$PEER/bench.sh" > "$OUT/wllama.jsonl" || true

"$BIN" serve --port 0 --www www --models models > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
URL=
for _ in $(seq 1 100); do
  URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$OUT/server.log" | head -1 || true)
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 0.2
done
echo "[bench-browser] gemma-web at $URL, loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
node scripts/bench-browser.mjs "$URL" > "$OUT/gemma-web.jsonl" || true

cat "$OUT/wllama.jsonl" "$OUT/gemma-web.jsonl"
node - "$OUT/wllama.jsonl" "$OUT/gemma-web.jsonl" <<'EOF'
const fs = require("node:fs");
const lines = process.argv.slice(2).flatMap((f) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean))
  .map((l) => JSON.parse(l));
const get = (engine, build) => lines.find((l) => l.engine === engine && l.build === build && l.ok) ?? null;
const [wst, wmt, g1, g2] = [get("wllama", "cpu-st"), get("wllama", "cpu-mt"), get("gemma-web", "cpu-1t"), get("gemma-web", "cpu-2t")];
const ratio = (a, b) => (a != null && b ? Math.round((a / b) * 1000) / 1000 : null);
// wllama's bench loads with useCache: false (the file over HTTP from 127.0.0.1, no storage), so its time to the first
// token after a reload is taken as its load time plus its first token's latency: a lower bound of a reload from
// its storage, which also reads the file and loads it.
const wllamaReloadTtft = wmt ? wmt.load_s + wmt.js_ttft_s : null;
const r = {
  ratios: {
    decode_2t_vs_wllama_mt: ratio(g2?.decode_tok_s, wmt?.decode_tok_s),
    prefill_2t_vs_wllama_mt: ratio(g2?.prefill_tok_s, wmt?.prefill_tok_s),
    decode_1t_vs_wllama_st: ratio(g1?.decode_tok_s, wst?.decode_tok_s),
    prefill_1t_vs_wllama_st: ratio(g1?.prefill_tok_s, wst?.prefill_tok_s),
    decode_2t_vs_1t: ratio(g2?.decode_tok_s, g1?.decode_tok_s),
    reload_ttft_2t_s: g2?.reload_ttft_s ?? null,
    wllama_mt_load_plus_ttft_s: wllamaReloadTtft == null ? null : Math.round(wllamaReloadTtft * 1000) / 1000,
    reload_ttft_2t_vs_wllama_mt: ratio(g2?.reload_ttft_s, wllamaReloadTtft),
  },
  same_tokens_as_wllama: g2 && wmt && g2.token_ids && wmt.token_ids
    ? g2.token_ids.every((id, i) => id === wmt.token_ids[i]) : null,
};
r.goals = {
  decode_ge_1_5x_wllama_mt: r.ratios.decode_2t_vs_wllama_mt == null ? null : r.ratios.decode_2t_vs_wllama_mt >= 1.5,
  prefill_ge_1x_wllama_mt: r.ratios.prefill_2t_vs_wllama_mt == null ? null : r.ratios.prefill_2t_vs_wllama_mt >= 1,
  reload_ttft_le_wllama: r.ratios.reload_ttft_2t_vs_wllama_mt == null ? null : r.ratios.reload_ttft_2t_vs_wllama_mt <= 1,
};
console.log(JSON.stringify(r));
EOF
