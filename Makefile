# Set-up and checks in one command each; every target makes its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-all docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The main job: clean, split, train and evaluate on the bundled real sample.
demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/bloodcell demo --out runs/demo

# The default test suite (fast tests and doctests; heavy tests are marked slow).
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pytest

# Everything, the slow tests included.
test-all: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pytest -m "slow or not slow"

# HTML docs, warnings as errors. The gallery runs every example in examples/ with --smoke (minutes
# on a CPU); SPHINXOPTS="-D plot_gallery=0" builds the pages without running them.
SPHINXOPTS ?=
docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	$(BIN)/python -m sphinx -W --keep-going -b html $(SPHINXOPTS) docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build docs/auto_examples docs/api/generated runs
