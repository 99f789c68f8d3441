# snn-zoo: the two commands are `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_WORKERS ?= 2
export ZOO_DATA_DIR ?= $(abspath ../shared/data)
export MLFLOW_TRACKING_URI ?= sqlite:///$(abspath mlflow.db)

.PHONY: help venv demo zoo test test-fast bench wheel clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,nir]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install snn-zoo with its pinned dependencies

demo: $(STAMP)  ## rebuild the embedded default zoo (scikit-learn digits, offline) with `dvc repro`
	ZOO_NUM_THREADS=$${ZOO_NUM_THREADS:-1} $(BIN)/zoo demo

zoo: $(STAMP)  ## rebuild the full zoo (MNIST, CIFAR-10 ResNets and VGG-16) from the data root $$ZOO_DATA_DIR
	$(BIN)/zoo check-data --zoo full
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro publish-full

test: $(STAMP)  ## run the whole test suite (TEST_WORKERS=2 pytest-xdist processes, one test file each)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)  ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)  ## ANN vs SNN timestep cost (bench/README.md)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/timestep_cost.py

wheel: $(STAMP)  ## build dist/snn_zoo-*.whl, with the published zoo indexes inside (setup.py; no download)
	rm -rf build dist/snn_zoo-*.whl
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --no-index -w dist .

clean:  ## remove caches (keeps .venv and models/)
	rm -rf .pytest_cache mlruns lightning_logs
