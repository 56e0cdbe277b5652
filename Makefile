# Two entry points: `make demo` (demo data -> dvc repro) and `make test`. Both create .venv
# and install the pinned dependencies when needed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Third-party clients the serving tests call the gateway with, out of process as a user's system
# would (tritonclient, the KServe SDK, grpc_health): their own venv, because they pin packages the
# project's cannot share (kserve: pandas<3, psutil<6; tritonclient: ml-dtypes<=0.5.4).
CLIENTS ?= .venv-clients
CLIENTS_STAMP := $(CLIENTS)/.installed
# TensorFlow's native logs: errors only (3), so the CLI also drops its import-time lines
# (soilcast.commands.common.import_tensorflow_quietly); set 0-2 to see them.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: demo paper test lint install data lock clean-demo prometheus

install: $(STAMP)

$(CLIENTS_STAMP): requirements-clients.lock
	test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install -q -r requirements-clients.lock
	touch $(CLIENTS_STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# Regenerate the demo data only when data/raw is missing or differs from data.dvc
# (the generator is deterministic, so a fresh run reproduces the tracked hash).
data: $(STAMP)
	$(BIN)/dvc status -q data.dvc || $(BIN)/soilcast demo-data data/raw

demo: data
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

# The paper's setting as a DVC experiment: the seven weather inputs only, networks predict the
# soil-moisture level. Same stages and gate; a paper model worse than the served one is not exported.
paper: data
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc exp run -S window.antecedent_soil_moisture=false -S window.target=state
	cat artifacts/eval/leaderboard.md

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks components pipelines

test: $(STAMP) $(CLIENTS_STAMP) lint prometheus
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

# The monitoring tests run promtool and a real Prometheus: install them when missing and the
# machine allows it (root with apt-get, as .ci/run does); otherwise stop and say how.
prometheus:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Prometheus (promtool, prometheus) with apt-get"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq prometheus >/dev/null || exit 1; \
	  else \
	    echo "make test needs promtool and prometheus on PATH; install them with:" >&2; \
	    echo "  sudo apt-get install -y prometheus    (Debian/Ubuntu)" >&2; \
	    echo "or put the Prometheus release binaries (prometheus, promtool) on PATH" >&2; \
	    exit 1; \
	  fi; \
	fi

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^soilcast' > requirements.lock
	$(CLIENTS)/bin/python -m pip freeze > requirements-clients.lock

clean-demo:
	rm -rf data/raw data/interim data/processed artifacts models
