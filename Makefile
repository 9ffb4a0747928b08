# One command to set up and run the whole pipeline locally (`make demo`), one to run the tests
# (`make test`). Both create .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the AWS SAM CLI lives in its own venv: it pins older dependencies than the project
SAM_VENV ?= .venv-sam
# the trees lint and format cover (dashboard/ once it exists)
LINT_TREES := src tests functions training benchmarks .github $(wildcard dashboard)

.PHONY: setup demo test test-fast lint security sam-venv sam bench clean

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

# the tests that start no server (moto's in-process mock_aws instead): while you work
test-fast: setup
	$(BIN)/python -m pytest -m "not integration and not slow"

# ruff (lint + format) and mypy (files: pyproject.toml's [tool.mypy])
lint: setup
	$(BIN)/ruff check $(LINT_TREES)
	$(BIN)/ruff format --check $(LINT_TREES)
	$(BIN)/mypy

# bandit (medium and high findings) on the code, pip-audit on what the Lambdas install (needs the network: CI runs it)
security:
	$(PYTHON) -m venv .venv-security
	.venv-security/bin/pip install -q bandit pip-audit
	.venv-security/bin/bandit -q --severity-level medium -r src functions training
	.venv-security/bin/pip-audit -r functions/api/requirements.txt
	.venv-security/bin/pip-audit -r functions/ingest/requirements.txt
	.venv-security/bin/pip-audit -r functions/features/requirements.txt
	.venv-security/bin/pip-audit -r functions/monitor/requirements.txt

sam-venv: $(SAM_VENV)/.installed

$(SAM_VENV)/.installed: infra/sam-requirements.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q -r infra/sam-requirements.txt
	touch $@

# what CI checks of the template; `sam build` of the API needs a python3.12 on PATH, the
# ingest and features builds (functions/Makefile) a $(PYTHON) with pip
sam: sam-venv
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM_VENV)/bin/sam validate --lint
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM_VENV)/bin/sam build

# every benchmark, then one table of the figures beside their goals (benchmarks/RESULTS.md)
bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .stockml .pytest_cache .aws-sam
