# milvus-ingest: fill Milvus with Model2Vec embeddings on Apache Beam.
# `make` lists the targets. Everything installs into $(VENV), made on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/local.yaml
# Beam flags for the pipelines, e.g. RUNNER_FLAGS="--direct_num_workers=2 --direct_running_mode=multi_processing"
RUNNER_FLAGS ?=
PYTEST_ARGS ?= -q

.DEFAULT_GOAL := help
.PHONY: help install install-test install-dev demo ingest search test lint format clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras: reinstalls when setup.py changes.
$(VENV)/.installed-%: setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".$(if $(filter base,$*),,[$*])"
	@touch $@

install: $(VENV)/.installed-base ## Install the project into $(VENV)
install-test: $(VENV)/.installed-test ## Install the project and what the tests need
install-dev: $(VENV)/.installed-dev ## Install the project, the tests and the linters

demo: install ## Ingest Python's docs into Milvus Lite (work/) and answer sample questions
	$(BIN)/python -m pipelines.demo --config $(CONFIG) $(RUNNER_FLAGS)

ingest: install ## Run the ingestion pipeline with $(CONFIG)
	$(BIN)/python -m pipelines.ingest --config $(CONFIG) $(RUNNER_FLAGS)

search: install ## Run the search pipeline with $(CONFIG) (its sample queries)
	$(BIN)/python -m pipelines.search --config $(CONFIG) $(RUNNER_FLAGS)

test: install-test ## Run the tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy transforms pipelines tests

format: install-dev ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the demo's data, caches and build files (keeps $(VENV))
	rm -rf work build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
