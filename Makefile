# One command to set up and run the whole pipeline locally (`make demo`), one to run the tests
# (`make test`). Both create .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/stockml demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests functions training dashboard benchmarks
	$(BIN)/ruff format --check src tests functions training dashboard benchmarks

bench: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/serve.py

clean:
	rm -rf .stockml .pytest_cache
