#!/usr/bin/env bash
# On a machine with a GPU: check that wgpu sees the GPU (not a CPU adapter), then bench the Gemma 3 270M and a
# random-weight Gemma 2 2B-shaped Q4_K_M file. One JSON line each on stdout (bench-kernels' first, then each bench;
# progress on stderr).
#
#   scripts/gpu-bench.sh      # builds target/release/gemma-web; MODEL defaults to models/gemma-3-270m-q4_k_m.gguf
#
# A lent machine with no network cannot build (no crates) nor fetch the model: build here, carry the binary (17 MB)
# and give its path; without the real 270M the script benches a random-weight 270M-shaped file instead, the same
# shapes and types (its speed is the same; its tokens are noise):
#
#   GEMMA_WEB_BIN=target/release/gemma-web scripts/gpu-bench.sh
#
# env: MODEL, GEMMA_WEB_BIN, OUT (default .cache/gpu-bench), PROMPT_TOKENS (128), GEN_TOKENS (64), PROFILE=1 (adds
# --profile: GPU time per kernel class from timestamp queries).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/gemma-3-270m-q4_k_m.gguf}
BIN=${GEMMA_WEB_BIN:-target/release/gemma-web}
OUT=${OUT:-.cache/gpu-bench}
PROMPT_TOKENS=${PROMPT_TOKENS:-128}
GEN_TOKENS=${GEN_TOKENS:-64}
mkdir -p "$OUT" .cache/xdg && chmod 700 .cache/xdg
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$PWD/.cache/xdg}

if [ -z "${GEMMA_WEB_BIN:-}" ]; then
  echo "gpu-bench: cargo build --release" >&2
  cargo build --release -p gemma-web --bin gemma-web >&2
fi

# What the machine offers, for the record: the GPU and the Vulkan drivers (ICDs) the loader can find.
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null || echo "no Vulkan ICD directory"
} >&2 || true

# The adapter wgpu picks: a CPU adapter (lavapipe) here means the GPU's Vulkan driver is not visible.
"$BIN" bench-kernels --quick --json --types Q4_K,Q6_K,Q8_0 >"$OUT/kernels.json"
python3 - "$OUT/kernels.json" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
print(f"gpu-bench: adapter {r['adapter']} ({r['backend']}), matvec layout {r['matvec_shape']}, "
      f"stream {r['stream_gb_per_s']:.1f} GB/s")
if any(s in r["adapter"].lower() for s in ("llvmpipe", "lavapipe", "swiftshader")):
    print("gpu-bench: WARNING: a CPU adapter; install the GPU's Vulkan driver (ICD) for real numbers")
PY
python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' "$OUT/kernels.json"

if [ ! -f "$MODEL" ]; then
  echo "gpu-bench: $MODEL is missing; writing a random Gemma 3 270M-shaped Q4_K_M file instead" >&2
  MODEL="$OUT/gemma3-270m-random.gguf"
  [ -f "$MODEL" ] || "$BIN" random-model --arch gemma3 --preset 270m --out "$MODEL" >&2
fi
if [ ! -f "$OUT/gemma2-2b-q4km.gguf" ]; then
  echo "gpu-bench: writing a random Gemma 2 2B-shaped Q4_K_M file" >&2
  "$BIN" random-model --arch gemma2 --preset 2b --out "$OUT/gemma2-2b-q4km.gguf" >&2
fi

for m in "$MODEL" "$OUT/gemma2-2b-q4km.gguf"; do
  "$BIN" bench --model "$m" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --json ${PROFILE:+--profile}
done
