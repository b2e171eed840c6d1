#!/usr/bin/env bash
# gemma-web against llama.cpp's Vulkan backend on the same GGUF file, in one run: decode of 32 tokens (tg32)
# and prefill of 64 (pp64), each engine's tokens/s and the ratio, as one JSON line.
#
#   scripts/bench-peers.sh                      # the Gemma 3 270M in models/, the first Vulkan device
#   LLAMA_BENCH=/path/to/llama-bench MODEL=x.gguf scripts/bench-peers.sh
#
# LLAMA_BENCH defaults to the build that ../shared/peers/llamacpp/build.sh makes in .cache/peers/llamacpp
# (run it once: about 20 minutes on 2 cores). GEMMA_WEB_BIN defaults to the release build, built if missing.
# llama.cpp skips CPU-type Vulkan devices (lavapipe) unless named, hence GGML_VK_VISIBLE_DEVICES=0; its
# first run compiles pipelines, so one warm-up run comes before the timed one. Compare numbers only within
# one run: these machines vary by 2x from day to day.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/gemma-3-270m-q4_k_m.gguf}
LLAMA_BENCH=${LLAMA_BENCH:-.cache/peers/llamacpp/build/bin/llama-bench}
GEMMA_WEB_BIN=${GEMMA_WEB_BIN:-target/release/gemma-web}
REPS=${REPS:-3}
export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
mkdir -p .cache/xdg && chmod 700 .cache/xdg
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$PWD/.cache/xdg}

[ -f "$MODEL" ] || { echo "bench-peers: no model at $MODEL (make model)" >&2; exit 1; }
[ -x "$LLAMA_BENCH" ] || {
  echo "bench-peers: no llama-bench at $LLAMA_BENCH; build it with ../shared/peers/llamacpp/build.sh or set LLAMA_BENCH" >&2
  exit 1
}
if [ ! -x "$GEMMA_WEB_BIN" ]; then
  cargo build --release -p gemma-web --bin gemma-web >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# gemma-web: prefill of exactly 64 prompt tokens, then 32 decode steps (greedy), best of REPS runs.
for i in $(seq "$REPS"); do
  "$GEMMA_WEB_BIN" bench --model "$MODEL" --prompt-tokens 64 --gen-tokens 32 --json >>"$tmp/gemma.jsonl"
done
# llama.cpp, Vulkan, every layer on the device: a warm-up, then the timed run.
"$LLAMA_BENCH" -m "$MODEL" -p 64 -n 32 -r 1 -ngl 99 -o json >/dev/null 2>&1 || true
"$LLAMA_BENCH" -m "$MODEL" -p 64 -n 32 -r "$REPS" -ngl 99 -o json >"$tmp/llama.json" 2>"$tmp/llama.err" || {
  cat "$tmp/llama.err" >&2
  exit 1
}

python3 - "$tmp/gemma.jsonl" "$tmp/llama.json" "$MODEL" <<'PY'
import json, sys
gemma = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
llama = json.load(open(sys.argv[2]))
g_pp = max(r["prefill_tok_s"] for r in gemma)
g_tg = max(r["decode_tok_s"] for r in gemma)
l_pp = next(r["avg_ts"] for r in llama if r["n_prompt"] == 64 and r["n_gen"] == 0)
l_tg = next(r["avg_ts"] for r in llama if r["n_gen"] == 32 and r["n_prompt"] == 0)
g0 = gemma[0]
print(json.dumps({
    "model": sys.argv[3],
    "adapter": g0["adapter"],
    "gemma_web": {"pp64_tok_s": g_pp, "tg32_tok_s": g_tg,
                  "dispatches_per_layer": g0.get("dispatches_per_layer"),
                  "decode_fraction_of_roofline": g0.get("decode_fraction_of_roofline")},
    "llamacpp_vulkan": {"pp64_tok_s": l_pp, "tg32_tok_s": l_tg,
                        "backend": llama[0].get("backends"), "device": llama[0].get("gpu_info")},
    "ratio": {"pp64": g_pp / l_pp, "tg32": g_tg / l_tg},
}))
PY
