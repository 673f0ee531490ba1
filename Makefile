# feedrank: every set-up step lives here, so two commands do everything.
#   make demo   - set up (venv, package, jars) and run the main job
#   make test   - set up, then lint, types, stale-stub check, unit and integration tests
#   make lock   - upgrade the lock: re-resolve pyproject.toml's ranges to the newest allowed
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every installed version, with its hashes: what CI tested is what a new set-up gets.
LOCK := requirements.lock
PROTO_FILES := $(wildcard proto/feedrank/v1/*.proto)
PROTOC = PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I proto \
	--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) $(PROTO_FILES)

.PHONY: setup venv native bytecode lock architecture jars tools bench-tools bench demo test lint types proto proto-check unit integration clean

setup: venv jars tools

# Debian tools the tests use for real: promtool (Prometheus), docker-compose's static
# validation, HAProxy (the explore replicas' balancer) and openssl (`feedrank certs`: the
# TLS tests' certificates). Installed once, only when missing.
tools:
	@command -v promtool >/dev/null && command -v docker-compose >/dev/null && \
	  command -v openssl >/dev/null && \
	  { command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus docker-compose haproxy openssl >/dev/null; }

# The virtual environment is rebuilt whenever pyproject.toml or the lock changes: the
# dependencies come from the lock only (exact versions, hash-checked, nothing resolved
# anew), installed by uv (about 70 s from nothing against pip's 125 s, measured), then
# the package itself, editable, without dependency resolution. pip check catches a lock
# that no longer satisfies pyproject.toml's ranges. uv writes no bytecode unless told:
# without it every Python process (and there are hundreds in the integration tests:
# each `feedrank` command, stack component, Flink Python worker) compiled what it
# imported again, never kept where PYTHONDONTWRITEBYTECODE is set (docs/operations.md, "Tests").
UV_VERSION ?= 0.13.9
venv: $(VENV)/.installed bytecode native
$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip install --python $(BIN)/python --system-certs --link-mode copy \
	  --require-hashes --compile-bytecode -r $(LOCK)
	$(BIN)/pip install --no-deps -e .
	@$(BIN)/pip check || { echo "$(LOCK) does not satisfy pyproject.toml:" \
	  "run 'make lock LOCK_FLAGS=' (or 'make lock' to upgrade everything) and commit it" >&2; exit 1; }
	@touch $@

# Upgrade the lock: re-resolve the ranges in pyproject.toml (dependencies and the dev extra)
# to the newest versions they allow, for Python 3.11-3.12 on every platform (markers say
# where a pin applies), with the hashes of every file; then commit requirements.lock.
# `make lock LOCK_FLAGS=` keeps the locked versions and only adds what pyproject.toml
# newly asks for; `LOCK_FLAGS='--upgrade-package torch'` upgrades one package.
LOCK_FLAGS ?= --upgrade
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command 'make lock' $(LOCK_FLAGS) --output-file $(LOCK) >/dev/null

# The decision log's item encoder in C (core/feedrank/core/decision_items.py), a CPython
# extension built next to its source: a C compiler and Python's headers. Without them
# explore writes the same bytes in Python, slower, and the build says so.
native: $(VENV)/.native
$(VENV)/.native: core/feedrank/core/_decision_items.c $(VENV)/.installed
	@$(BIN)/python -m feedrank.core.native_build
	@touch $@

# Bytecode of our own packages and the benchmarks, on every core; only what changed since
# is compiled again (a Python process recompiles a stale file in memory by itself).
SOURCE_DIRS := proto core services streaming learners deploy apps tools benchmarks
bytecode: $(VENV)/.installed
	@$(BIN)/python -m compileall -q -j 0 $(SOURCE_DIRS) >/dev/null

# Kafka broker jars and the Flink Kafka connector, through Maven, into the jar cache.
jars: venv
	$(BIN)/feedrank setup

# ghz, a compiled gRPC load generator, from the Go module proxy (benchmarks only).
GHZ_VERSION ?= v0.93.0
bench-tools:
	@command -v ghz >/dev/null || test -x $$HOME/go/bin/ghz || \
	  go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

# The full benchmarks (about 50 minutes): retrieval at 1M posts, Rank under load and its
# in-process cost, gRPC's own cost per call, the join's throughput, scale-out (replicas,
# join parallelism) and chaos on the cluster topology.
bench: setup bench-tools
	$(BIN)/python benchmarks/retrieval.py --posts 1000000
	$(BIN)/python -m benchmarks.rank_load
	$(BIN)/python -m benchmarks.grpc_overhead
	$(BIN)/python -m benchmarks.join_throughput
	$(BIN)/python -m benchmarks.scale_out
	$(BIN)/python -m benchmarks.chaos

# The closed-loop demo: the whole local stack, simulated apps, ten simulated days.
demo: setup
	$(BIN)/feedrank --config deploy/local/demo.toml up

test: setup lint types proto-check unit integration

# pytest exits 5 when a selection holds no tests: say so instead of failing on it.
PYTEST_TOLERATING_EMPTY = rc=0; $(BIN)/pytest $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected in $(2)"; rc=0; fi; exit $$rc

# The unit tests on every core (pytest-xdist; 94 s to 60 s on 2 cores, measured). The
# integration tests stay serial: their brokers, Flink clusters and load runs share
# the cores, and several measure latency under load (two workers for the lighter 127
# saved 85 s of about 1,650: docs/operations.md, "Tests").
unit: venv
	@$(call PYTEST_TOLERATING_EMPTY,-n auto tests/unit,tests/unit)

# Real Kafka broker, Flink mini-cluster and gRPC servers, started by fixtures. The
# slowest 20 are listed at the end: where the suite's time goes.
integration: jars
	@$(call PYTEST_TOLERATING_EMPTY,--integration --durations=20 tests/integration,tests/integration)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python tools/draw_rooms.py --check

# Redraw the rooms and the imports between them in docs/architecture.md, from the code.
architecture: venv
	$(BIN)/python tools/draw_rooms.py

types: venv
	$(BIN)/mypy

# Regenerate the protobuf/gRPC stubs (committed) from proto/feedrank/v1/*.proto.
proto: venv
	$(call PROTOC,proto)

# Fail when the committed stubs differ from what the .proto files generate.
proto-check: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	$(call PROTOC,$$tmp) && \
	diff -r -x '*.proto' -x '__pycache__' -x '*.py[co]' $$tmp/feedrank/v1 proto/feedrank/v1 \
	  || { echo "proto stubs are stale: run 'make proto' and commit the result" >&2; exit 1; }

clean:
	rm -rf $(VENV) .feedrank .pytest_cache .mypy_cache .ruff_cache
