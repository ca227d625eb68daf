# wasmgate — every target sets up what it needs first (`make run`, `make test`).
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Two pytest workers (pytest-xdist): on a 2-core machine they take the suite from about
# 8.5 minutes to about 4.5. PYTEST_WORKERS= runs it in one process.
PYTEST_WORKERS ?= -n 2

.PHONY: help install compile test-compiled run test lint format typecheck check bench bench-instr soak clean wasm registry demo-canary demo-gateway-api demo-zero-trust deploy-check

help:
	@echo "make run        set up, start the demo upstreams and serve examples/gateway.toml"
	@echo "make test       set up and run the test suite"
	@echo "make check      lint + types + tests (run before committing)"
	@echo "make bench      wasmgate vs nginx with wrk and h2load (installs nginx, wrk, nghttp2-client if missing)"
	@echo "make bench-instr  instructions per request (valgrind's callgrind), nginx vs wasmgate; noise-free"
	@echo "make soak       10 minutes of mixed traffic and reloads; checks errors, RSS and fds"
	@echo "make install    create $(VENV), install wasmgate editable with dev extras, and compile"
	@echo "                the data path with mypyc when it can (COMPILE=0 skips; else pure Python)"
	@echo "make compile    the mypyc build alone; fails loudly when it cannot build"
	@echo "make test-compiled  the data-path tests against the compiled modules (WASMGATE_COMPILED=1)"
	@echo "make wasm       build the example WASM filters in plugins/wasm (needs npm, Go >= 1.24 and cargo; installs ziglang)"
	@echo "make demo-canary  the NGINX Ingress canary walkthrough from manifests (VARIANT=weight)"
	@echo "make demo-gateway-api  a canary by weight and by header from Gateway API manifests"
	@echo "make demo-zero-trust  JWT at the edge, mTLS to the upstream, with a dev CA (wasmgate cert)"
	@echo "make registry   build the example plugin registry in examples/registry (what make run serves)"
	@echo "make deploy-check  check deploy/ (manifests, and the Containerfile's build steps in a fresh venv)"

# Then the data path compiled with mypyc into build/compiled/ (scripts/compile.py; about a
# minute the first time, skipped while its manifest matches the sources, Python, mypy and
# the script). No gcc or Python headers, or a failed build: one line, and wasmgate runs
# pure Python (core/compiled.py). COMPILE=0 skips the step.
COMPILE ?= 1
install: $(STAMP)
	@$(if $(filter 0,$(COMPILE)),echo "compile: skipped (COMPILE=0)",$(PY) scripts/compile.py --best-effort)

# Re-installs only when pyproject.toml or a C extension (core/wasm/_crossing*.[ch], plugin_sdk/_timing.c) changes
# (pip builds it in place, core/wasm/_crossing.*.so); otherwise a no-op.
$(STAMP): pyproject.toml $(wildcard core/wasm/_crossing*.[ch] plugin_sdk/_timing.c)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "wasmgate needs Python >= 3.11"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The same build, but a missing toolchain or a failed build is an error (and its output
# is on the terminal). WASMGATE_COMPILED (auto, 1, 0) decides whether the gateway runs it.
compile: $(STAMP)
	$(PY) scripts/compile.py

# The data path's own test files: `make test` runs them a second time on pure Python (the
# fallback, about 25 s on 2 workers) after the whole suite ran on what `make install`
# built; `make test-compiled` runs them with WASMGATE_COMPILED=1 (the build or stop).
DATA_PATH_TESTS ?= tests/test_smoke.py tests/test_streaming.py tests/test_chain.py \
	tests/test_headers.py tests/test_drive.py tests/test_upstream.py tests/test_trailers.py \
	tests/hardening/test_hostile_input.py tests/test_deadline.py tests/test_routing_e2e.py \
	tests/test_http2.py tests/test_upstream_h2.py tests/plugins/test_canary.py \
	tests/plugins/test_cors.py tests/plugins/test_rewrite.py tests/test_compiled.py \
	tests/test_wasm_body_whole.py tests/test_chain_stats.py tests/test_chain_timing.py \
	tests/test_compiled_sdk.py tests/test_wasm_header_fields.py tests/test_wasm_crossing.py

test-compiled: compile
	WASMGATE_COMPILED=1 $(PY) -m pytest $(PYTEST_WORKERS) $(DATA_PATH_TESTS) $(PYTEST_ARGS)

run: install registry
	$(PY) examples/demo.py

# Debian packages the tests drive as real peers (scripts/install-debs.sh installs the
# missing ones; a test whose program is missing skips and names the package).
TEST_DEBS := chromium chromium-driver redis-server valgrind nginx curl nghttp2-client
# tests/test_deploy.py parses deploy/ with kubectl: any kubectl on PATH will do.
TEST_DEBS += $(if $(shell command -v kubectl),,kubernetes-client)

# The suite on the data path as installed (compiled when `make install` could build it:
# the report header says which), then, when that was the compiled one, the data-path files
# on pure Python. PURE_TESTS= skips that second pass.
PURE_TESTS ?= $(DATA_PATH_TESTS)
COMPILED_NOW := $(PY) -c 'import sys; from core import compiled; sys.exit(not compiled.status().compiled)'
test: install
	@scripts/install-debs.sh $(TEST_DEBS)
	@$(PY) -c 'from core import compiled; print("wasmgate data path:", compiled.status().describe())' || true
	$(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)
	@if [ -n "$(strip $(PURE_TESTS))" ] && $(COMPILED_NOW) 2>/dev/null; then \
		echo "the data-path tests again on pure Python: WASMGATE_COMPILED=0 $(PY) -m pytest ..."; \
		WASMGATE_COMPILED=0 $(PY) -m pytest $(PYTEST_WORKERS) $(PURE_TESTS) $(PYTEST_ARGS); \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

bench: install
	$(PY) bench/run.py
	$(PY) bench/reload.py
	$(PY) bench/h2.py

# Instructions per request under callgrind (bench/instr.py --help; about 3 minutes);
# INSTR_ARGS="--targets nginx,wasmgate --requests 500" for a shorter run.
bench-instr: install
	@scripts/install-debs.sh valgrind nginx
	$(PY) bench/instr.py $(INSTR_ARGS)

# Not part of test or check: about 11 minutes (bench/soak.py --help; SOAK_ARGS="--minutes 2").
soak: install
	$(PY) bench/soak.py $(SOAK_ARGS)

# Skips filters whose build output is newer than their sources (see plugins/wasm/build.py).
# Go filters keep Go's build and module caches in .cache/go/ (git-ignored), the Rust
# filter cargo's home and target folder in .cache/cargo/, so a rebuild takes seconds;
# delete .cache/ to start cold. build.py adds the wasm32-wasip1 target with rustup if missing.
ZIGLANG := $(PY) -c 'import ziglang' 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check ziglang

wasm: install
	@$(ZIGLANG)
	$(PY) plugins/wasm/build.py

# The canary walkthrough served from unchanged NGINX Ingress manifests
# (examples/ingress-canary/); VARIANT=weight for the weight-based canary.
demo-canary: install
	$(PY) examples/ingress-canary/demo.py --variant $(or $(VARIANT),header)

# Client --HTTPS + JWT--> gateway --mTLS--> upstream (examples/zero-trust/); makes a dev
# CA and certificates in examples/zero-trust/.certs/ the first time.
demo-gateway-api: install
	$(PY) examples/gateway-api/demo.py

demo-zero-trust: install
	$(PY) examples/zero-trust/demo.py

# The example plugin registry (examples/registry/build.py): the example WASM filters
# and two built-in plugins, packed and signed; what `make run` serves on :8700.
# A filter whose toolchain is missing (npm, zig) is left out with a warning, so that
# `make run` works without them.
registry: install
	@$(ZIGLANG) || echo "warning: could not install ziglang; c-filter is left out"
	$(PY) examples/registry/build.py

# deploy/ checked without a cluster (tests/test_deploy*.py, which `make test` runs too),
# plus what `make test` skips: the Containerfile's build stage replayed in a fresh venv
# in a temp folder (pip installs from PyPI; about 40 s with a warm pip cache).
deploy-check: install
	@command -v kubectl >/dev/null || scripts/install-debs.sh kubernetes-client
	WASMGATE_DEPLOY_CHECK=1 $(PY) -m pytest tests/test_deploy.py tests/test_deploy_serving.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
