# Two entry points: `make demo` (demo data -> dvc repro) and `make test`. Both create .venv
# and install the pinned dependencies when needed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test install data lock clean-demo

install: $(STAMP)

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

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^soilcast' > requirements.lock

clean-demo:
	rm -rf data/raw data/interim data/processed artifacts models
