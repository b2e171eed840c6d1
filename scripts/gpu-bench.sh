#!/usr/bin/env bash
# On a machine with a GPU: build, check that wgpu sees the GPU (not a CPU adapter), and bench the Gemma 3 270M
# and a random-weight Gemma 2 2B-shaped Q4_K_M file. One JSON line each on stdout (progress on stderr); under
# 8 minutes on a recent GPU machine with 16 cores (most of it the release build).
#
#   scripts/gpu-bench.sh                # MODEL defaults to models/gemma-3-270m-q4_k_m.gguf (make model)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/gemma-3-270m-q4_k_m.gguf}
BIN=${GEMMA_WEB_BIN:-target/release/gemma-web}
OUT=${OUT:-.cache/gpu-bench}
mkdir -p "$OUT" .cache/xdg && chmod 700 .cache/xdg
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$PWD/.cache/xdg}

if [ ! -x "$BIN" ] || [ -z "${GEMMA_WEB_BIN:-}" ]; then
  echo "gpu-bench: cargo build --release" >&2
  cargo build --release -p gemma-web --bin gemma-web >&2
fi

# The adapter wgpu picks: a CPU adapter (lavapipe) here means the GPU's Vulkan driver is not visible.
"$BIN" bench-kernels --quick --json --types Q4_K >"$OUT/kernels.json"
python3 - "$OUT/kernels.json" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
print(f"gpu-bench: adapter {r['adapter']} ({r['backend']}), matvec layout {r['matvec_shape']}, "
      f"stream {r['stream_gb_per_s']:.1f} GB/s")
if any(s in r["adapter"].lower() for s in ("llvmpipe", "lavapipe", "swiftshader")):
    print("gpu-bench: WARNING: a CPU adapter; install the GPU's Vulkan driver (ICD) for real numbers")
PY

if [ ! -f "$OUT/gemma2-2b-q4km.gguf" ]; then
  echo "gpu-bench: writing a random Gemma 2 2B-shaped Q4_K_M file" >&2
  "$BIN" random-model --arch gemma2 --preset 2b --out "$OUT/gemma2-2b-q4km.gguf" >&2
fi

for m in "$MODEL" "$OUT/gemma2-2b-q4km.gguf"; do
  if [ -f "$m" ]; then
    "$BIN" bench --model "$m" --prompt-tokens 128 --gen-tokens 64 --json ${PROFILE:+--profile}
  else
    echo "gpu-bench: skipping $m (missing)" >&2
  fi
done
