# Set-up on a fresh machine is part of both targets; both are idempotent.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP_BASE := $(VENV)/.stamp-base
STAMP_DEV := $(VENV)/.stamp-dev
export MUJOCO_GL ?= egl

.PHONY: serve test lint layers typecheck unit demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP_BASE): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[service]'
	touch $@

$(STAMP_DEV): $(STAMP_BASE)
	$(BIN)/pip install -q -e '.[service,dev]'
	touch $@

serve: $(STAMP_BASE)
	$(BIN)/dexgrasp serve

demo: $(STAMP_BASE)
	$(BIN)/dexgrasp demo --out out/demo

lint: $(STAMP_DEV)
	$(BIN)/ruff check models service sim_worker tests bench

# the import contracts in pyproject.toml ([tool.importlinter]): service > sim_worker > models, no cycles
layers: $(STAMP_DEV)
	$(BIN)/lint-imports

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

unit: $(STAMP_DEV)
	$(BIN)/python -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test: lint layers typecheck unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
