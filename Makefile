# Every target creates .venv when missing; nothing else needs to be installed first.
PY ?= python3
# Let Python cache bytecode in .venv and src: with PYTHONDONTWRITEBYTECODE=1 (set on these
# machines) every `yard` subprocess of the tests and the demo compiles scikit-learn and scipy
# again (a `yard monitor drift` start: 5.0-6.6 s uncached, 4.4 s cached, on a busy machine).
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where this machine keeps local wheels (torch==2.13.0's CPU build); uv does not read pip.conf.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: demo test check lint format typecheck layers unit system mlflow-server feast-server bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python $(FIND_LINKS) -e '.[dev]'
	touch $(STAMP)

# The real MLflow tracking server that tests/integration/test_mlflow_server.py starts, in a
# virtualenv of its own: the full `mlflow` package (the server) cannot share .venv. mlflow 3.18
# needs an mlflow-tracing 3.18 the index lacks, and 3.17 caps pyarrow below 26, whose pyarrow 25
# trips pandas 3.1's deprecation warnings in the monitoring tests. .venv has the client
# (mlflow-skinny, the `mlflow` extra).
MLFLOW_SERVER := $(VENV)/mlflow-server
MLFLOW_STAMP := $(MLFLOW_SERVER)/.installed

$(MLFLOW_STAMP): $(STAMP)
	test -x $(MLFLOW_SERVER)/bin/python || $(PY) -m venv $(MLFLOW_SERVER)
	$(BIN)/uv pip install -q --python $(MLFLOW_SERVER)/bin/python 'mlflow==3.17.2'
	touch $(MLFLOW_STAMP)

mlflow-server: $(MLFLOW_STAMP)

# Feast in a virtualenv of its own: feast 0.67.0 requires pandas<3 and prometheus-client<0.25,
# and .venv has pandas 3.1 and prometheus-client 0.26 (the dry run says so). Its `feast serve`
# is the online feature server `yard serve --feast-url` asks once per batch, and its python runs
# the historical retrieval (MODELYARD_FEAST__PYTHON); modelyard needs no Feast package itself.
FEAST_VENV := $(VENV)/feast
FEAST_STAMP := $(FEAST_VENV)/.installed

$(FEAST_STAMP): $(STAMP)
	test -x $(FEAST_VENV)/bin/python || $(PY) -m venv $(FEAST_VENV)
	$(BIN)/uv pip install -q --python $(FEAST_VENV)/bin/python 'feast[redis]==0.67.0'
	touch $(FEAST_STAMP)

feast-server: $(FEAST_STAMP)

# make demo DEMO_KEEP_UI=1 leaves the dashboard up at the end until Ctrl-C.
demo: $(STAMP)
	DEMO_KEEP_UI=$(DEMO_KEEP_UI) $(BIN)/python examples/demo.py

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

# What the tests need outside .venv (Debian's Chromium for the report browser test, nghttp2's
# h2load for the gRPC door's load test); quick when they are there, and where they cannot be
# installed those tests skip saying why.
system:
	.ci/setup-system

# Two pytest processes, one per core (pytest-xdist); --dist loadfile keeps each file's tests (and
# its module-scoped servers) in one process, and tests/conftest.py gives each process its own
# PostgreSQL database. Measured on 6 integration files: 140 s in one process, 87 s in two.
PYTEST := $(BIN)/pytest -q -n 2 --dist loadfile

unit: $(STAMP) system mlflow-server feast-server
	$(PYTEST)

test: check system mlflow-server feast-server
	$(PYTEST)

bench: $(STAMP)
	$(BIN)/python benchmarks/registry.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/batch.py
	$(BIN)/python benchmarks/ui.py --home benchmarks/.envs/ui-home

# The gRPC messages serving/protobuf.py loads: the descriptor set grpcio-tools compiles from the
# committed .proto (committed too; tests/unit/serving/test_proto.py fails when it is stale).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Isrc/modelyard/serving/_proto \
		--descriptor_set_out=src/modelyard/serving/_proto/inference.binpb inference.proto

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
