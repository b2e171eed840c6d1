# gemma-web: set-up, build and tests. The two entry points are `make demo` and `make test` (see README.md);
# every step installs what it needs and skips what is already there.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

WASM_BINDGEN_VERSION := 0.2.129
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM := $(TARGET_DIR)/wasm32-unknown-unknown/release/gemma_web.wasm
# The shared-memory build (www/pkg-threads): nightly Rust rebuilds std with atomics; its own target dir keeps the
# stable builds' cache. RUSTFLAGS replaces .cargo/config.toml's, so simd128 is repeated. rustc no longer implies
# shared memory from atomics: the linker is asked for it (imported, so the pool's workers share it, up to 4 GiB for
# the 2B models) and for the thread-local-storage symbols wasm-bindgen sets up in each worker.
NIGHTLY ?= nightly
THREADS_TARGET_DIR := $(TARGET_DIR)/wasm-threads
WASM_THREADS := $(THREADS_TARGET_DIR)/wasm32-unknown-unknown/release/gemma_web.wasm
THREADS_RUSTFLAGS := -C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
  -C link-arg=--shared-memory -C link-arg=--max-memory=4294967296 -C link-arg=--import-memory \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align \
  -C link-arg=--export=__tls_base
PORT ?= 8080
# Tools that `cargo install` puts here must be found even when the shell's profile did not add the folder.
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)
# Native wgpu (lavapipe) wants a private runtime dir.
XDG_DIR := $(CURDIR)/.cache/xdg
APT_PACKAGES := chromium chromium-driver mesa-vulkan-drivers libvulkan1 fonts-liberation
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help demo test deps toolchain model wasm wasm-single wasm-threads serve test-deps test-native test-web-kernels test-e2e

help:
	@echo "make demo   install what is missing, build the wasm package, serve the page on http://127.0.0.1:$(PORT)/"
	@echo "make test   install test prerequisites (apt, npm) and run every test"
	@echo "also: deps (toolchain + model), toolchain, model, wasm (wasm-single + wasm-threads), test-native, test-web-kernels, test-e2e"

## make demo: install what is missing, build the page's wasm package and serve the page with the default model.
demo: deps wasm
	@echo "gemma-web: open http://127.0.0.1:$(PORT)/ (Ctrl-C stops the server)"
	cargo run --release -p gemma-web -- serve --port $(PORT) --models models

## make test: install test prerequisites, then run every test.
test: test-deps deps wasm test-native test-web-kernels test-e2e
	@echo "gemma-web: all tests passed"

deps: toolchain model

toolchain:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup run $(NIGHTLY) rustc --version >/dev/null 2>&1 || rustup toolchain install $(NIGHTLY) --profile minimal
	@rustup component list --toolchain $(NIGHTLY) --installed | grep -q '^rust-src' \
	  || rustup component add rust-src --toolchain $(NIGHTLY)
	@rustup target list --toolchain $(NIGHTLY) --installed | grep -qx wasm32-unknown-unknown \
	  || rustup target add wasm32-unknown-unknown --toolchain $(NIGHTLY)
	@if [ "$$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
	  cargo install wasm-bindgen-cli --version =$(WASM_BINDGEN_VERSION) --locked; \
	fi

model:
	scripts/fetch-model.sh

## make wasm: the page's wasm packages: www/pkg (single-threaded, stable Rust) and www/pkg-threads (shared memory,
## a rayon pool on Web Workers; www/wasm-loader.js picks it when the page is cross-origin isolated).
wasm: wasm-single wasm-threads

wasm-single: toolchain
	cargo build --release --target wasm32-unknown-unknown -p gemma-web
	wasm-bindgen --target web --out-dir www/pkg $(WASM)

wasm-threads: toolchain
	RUSTFLAGS='$(THREADS_RUSTFLAGS)' CARGO_TARGET_DIR=$(THREADS_TARGET_DIR) \
	  cargo +$(NIGHTLY) build --release --target wasm32-unknown-unknown -p gemma-web --features threads \
	  -Z build-std=panic_abort,std
	rm -rf www/pkg-threads
	wasm-bindgen --target web --out-dir www/pkg-threads $(WASM_THREADS)

test-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	  echo "test-deps: apt-get install $$missing"; \
	  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then $(APT_GET) update; fi; \
	  $(APT_GET) install -y --no-install-recommends $$missing \
	    || { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends $$missing; }; \
	fi
	@$(MAKE) --no-print-directory tests/node_modules/.installed

tests/node_modules/.installed: tests/package.json tests/package-lock.json
	cd tests && npm ci --no-audit --no-fund
	touch $@

test-native:
	mkdir -p $(XDG_DIR) && chmod 0700 $(XDG_DIR)
	XDG_RUNTIME_DIR=$(XDG_DIR) cargo test --workspace

## Kernel tests (crate/tests/web_kernels.rs) in headless Chromium's WebGPU (SwiftShader, no shader-f16), through
## wasm-bindgen-test-runner + chromedriver. The runner reads browser flags from the webdriver.json named by
## WASM_BINDGEN_TEST_WEBDRIVER_JSON (it adds headless/no-sandbox itself); each run gets a fresh profile.
## In the release profile: `make wasm` already compiled every wasm32 dependency there (a dev-profile wasm32 build
## would compile them all again, 9 minutes on 2 cores), and the same code is what the page runs.
CHROME_FLAGS := --headless --no-sandbox --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --enable-unsafe-webgpu
test-web-kernels:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	args=""; for f in $(CHROME_FLAGS) --user-data-dir=$$tmp/profile; do args="$$args\"$$f\","; done; \
	printf '{"goog:chromeOptions":{"binary":"/usr/bin/chromium","args":[%s]}}\n' "$${args%,}" > "$$tmp/webdriver.json"; \
	CHROMEDRIVER=$${CHROMEDRIVER:-/usr/bin/chromedriver} \
	WASM_BINDGEN_TEST_WEBDRIVER_JSON="$$tmp/webdriver.json" \
	WASM_BINDGEN_TEST_TIMEOUT=$${WASM_BINDGEN_TEST_TIMEOUT:-600} \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	cargo test --release --target wasm32-unknown-unknown -p gemma-web --test web_kernels

## The page in headless Chromium against `gemma-web serve` and the real model.
# The dev-profile server is enough here (dependencies build at opt-level 3 in it), where a release build would
# compile every native dependency a second time. It is built as the CLI tests build it (`cargo test` resolves the
# dependencies' features with the dev-dependencies, `cargo build` without them, and so rebuilds several of them and
# the binary): after test-native this is only a check.
test-e2e:
	cargo test -p gemma-web --no-run --test model_cli
	GEMMA_WEB_BIN=$(TARGET_DIR)/debug/gemma-web node --test tests/e2e/
