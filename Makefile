# feedrank: every set-up step lives here, so two commands do everything.
#   make demo   - set up (venv, package, jars) and run the main job
#   make test   - set up, then lint, types, stale-stub check, unit and integration tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_FILES := $(wildcard proto/feedrank/v1/*.proto)
PROTOC = PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m grpc_tools.protoc -I proto \
	--python_out=$(1) --grpc_python_out=$(1) --mypy_out=$(1) --mypy_grpc_out=$(1) $(PROTO_FILES)

.PHONY: setup venv jars tools bench-tools bench demo test lint types proto proto-check unit integration clean

setup: venv jars tools

# Debian tools the tests use for real: promtool (Prometheus) and docker-compose's
# static validation. Installed once, only when missing.
tools:
	@command -v promtool >/dev/null && command -v docker-compose >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus docker-compose >/dev/null; }

# The virtual environment is rebuilt whenever pyproject.toml changes.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	@touch $@

# Kafka broker jars and the Flink Kafka connector, through Maven, into the jar cache.
jars: venv
	$(BIN)/feedrank setup

# ghz, a compiled gRPC load generator, from the Go module proxy (benchmarks only).
GHZ_VERSION ?= v0.93.0
bench-tools:
	@command -v ghz >/dev/null || test -x $$HOME/go/bin/ghz || \
	  go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

# The full explore benchmarks (minutes): retrieval at 1M posts, then Rank under load.
bench: setup bench-tools
	$(BIN)/python benchmarks/retrieval.py --posts 1000000
	$(BIN)/python -m benchmarks.rank_load
	$(BIN)/python -m benchmarks.join_throughput

# The closed-loop demo: the whole local stack, simulated apps, ten simulated days.
demo: setup
	$(BIN)/feedrank --config deploy/local/demo.toml up

test: setup lint types proto-check unit integration

# pytest exits 5 when a selection holds no tests: say so instead of failing on it.
PYTEST_TOLERATING_EMPTY = rc=0; $(BIN)/pytest $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests collected in $(2)"; rc=0; fi; exit $$rc

unit: venv
	@$(call PYTEST_TOLERATING_EMPTY,tests/unit,tests/unit)

# Real Kafka broker, Flink mini-cluster and gRPC servers, started by fixtures.
integration: jars
	@$(call PYTEST_TOLERATING_EMPTY,--integration tests/integration,tests/integration)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

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
