# milvus-ingest: fill Milvus with Model2Vec embeddings on Apache Beam.
# `make` lists the targets. Everything installs into $(VENV), made on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/local.yaml
# Beam flags for the pipelines, e.g. RUNNER_FLAGS="--direct_num_workers=2 --direct_running_mode=multi_processing"
RUNNER_FLAGS ?=
PYTEST_ARGS ?= -q
# The local engines the engine tests (tests/test_runners_local.py) run on: Beam's FnApiRunner,
# and Prism where Go can build it (make prism). CI names both, so that it fails without Go.
comma := ,
ENGINES ?= fnapi$(if $(shell command -v go 2>/dev/null),$(comma)prism)

# The runner targets: INPUT and MODEL override the config's source and model; a Milvus server
# comes from MILVUS_URI (its token from MILVUS_TOKEN, never a flag). See README, "Runner cookbook".
INPUT ?=
MODEL ?=
MILVUS_URI ?=
INGEST_FLAGS = $(if $(INPUT),--input='$(INPUT)') $(if $(MODEL),--model='$(MODEL)') \
	$(if $(MILVUS_URI),--milvus_uri='$(MILVUS_URI)')
# The benchmark's flags, e.g. BENCH_FLAGS="--docs 100000 --repeat 3 --targets server" (bench/run.py --help),
# and its sync rows', e.g. SYNC_BENCH_FLAGS="--sizes 20000 --repeat 3" (bench/sync.py --help).
BENCH_FLAGS ?=
SYNC_BENCH_FLAGS ?=
WORKERS ?= 2
JOB_ENDPOINT ?= localhost:8099
WORKER_POOL ?= localhost:50000
DASK_SCHEDULER ?= tcp://localhost:8786
FLINK_MASTER ?= [local]
FLINK_JOB_SERVER_JAR ?=
# Dataflow: project, region and bucket from the environment.
GCP_PROJECT ?=
GCP_REGION ?=
GCS_BUCKET ?=

.DEFAULT_GOAL := help
.PHONY: help install install-test install-dev install-gcp install-bench install-dask prism demo ingest search \
	test lint format clean constraints bench run-multiprocess run-portable run-dask run-flink run-dataflow \
	client-venvs

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras: reinstalls when setup.py or the constraints change. The
# constraints pin what CI tested, so that pip's resolver does not backtrack for minutes.
$(VENV)/.installed-%: setup.py constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".$(if $(filter base,$*),,[$*])"
	@touch $@

install: $(VENV)/.installed-base ## Install the project into $(VENV)
install-test: $(VENV)/.installed-test ## Install the project and what the tests need
install-dev: $(VENV)/.installed-dev ## Install the project, the tests and the linters
install-gcp: $(VENV)/.installed-gcp ## Install the project and what launching on Dataflow needs
install-bench: $(VENV)/.installed-bench ## Install the project and the benchmark's peers and server
install-dask: $(VENV)/.installed-dask ## Install the project and what running on Dask needs

# Prism, Beam's Go runner, built from the Go module proxy for the Beam version the venv holds
# (Beam itself downloads it from GitHub releases). Built once: the binary is the target, so
# after upgrading Beam, delete it to build the new one.
PRISM := $(BIN)/prism
$(PRISM): | $(BIN)/python
	GOBIN=$(abspath $(BIN)) GOFLAGS=-mod=mod go install \
		github.com/apache/beam/sdks/v2/go/cmd/prism@v$$($(BIN)/python -c \
		'from apache_beam.version import __version__; print(__version__)')

prism: install $(PRISM) ## Build Beam's Prism runner into $(VENV) (needs Go; 1-4 min and 1.5 GB of Go caches the first time)

# The clients of docs/clients.md (LangChain, LlamaIndex, Beam's Milvus enrichment), each in a
# venv of its own in $(VENV)/clients/, as its users have it: their pymilvus pins conflict
# (pymilvus 3 for langchain-milvus, < 3 for the others), and none has this project. Each venv is
# made anew when its requirements or constraints (docs/clients/NAME-*.txt) change. The three
# install in parallel, since fetching from the registry, not cores, bounds them, and without
# compiling every module (--no-compile: 45 s less for LlamaIndex's; Python compiles what the
# snippets import, once). tests/test_clients.py runs the snippets in them.
CLIENTS := langchain llamaindex beam
CLIENT_VENVS := $(VENV)/clients
CLIENT_STAMPS := $(foreach c,$(CLIENTS),$(CLIENT_VENVS)/$(c)/.installed)

$(CLIENT_VENVS)/%/.installed: docs/clients/%-requirements.txt docs/clients/%-constraints.txt
	rm -rf $(CLIENT_VENVS)/$*
	$(PYTHON) -m venv $(CLIENT_VENVS)/$*
	$(CLIENT_VENVS)/$*/bin/python -m pip install --quiet --no-compile \
		-r docs/clients/$*-requirements.txt -c docs/clients/$*-constraints.txt
	@touch $@

client-venvs: ## One venv per client of docs/clients.md, in $(VENV)/clients/ (~2-4 min)
	@$(MAKE) --no-print-directory -j$(words $(CLIENTS)) $(CLIENT_STAMPS)

demo: install ## Ingest Python's docs into Milvus Lite (work/) and answer sample questions
	$(BIN)/python -m pipelines.demo --config $(CONFIG) $(RUNNER_FLAGS)

ingest: install ## Run the ingestion pipeline with $(CONFIG)
	$(BIN)/python -m pipelines.ingest --config $(CONFIG) $(RUNNER_FLAGS)

search: install ## Run the search pipeline with $(CONFIG) (its sample queries)
	$(BIN)/python -m pipelines.search --config $(CONFIG) $(RUNNER_FLAGS)

run-multiprocess: install ## Ingest with $(CONFIG) in $(WORKERS) local worker processes
	$(BIN)/python -m pipelines.ingest --config $(CONFIG) --direct_num_workers=$(WORKERS) \
		--direct_running_mode=multi_processing $(INGEST_FLAGS) $(RUNNER_FLAGS)

run-portable: install ## Ingest with $(CONFIG) via a job service at $(JOB_ENDPOINT), workers at $(WORKER_POOL)
	$(BIN)/python -m pipelines.ingest --config $(CONFIG) --runner=PortableRunner \
		--job_endpoint=$(JOB_ENDPOINT) --environment_type=EXTERNAL \
		--environment_config=$(WORKER_POOL) $(INGEST_FLAGS) $(RUNNER_FLAGS)

run-dask: install-dask ## Ingest with $(CONFIG) on the Dask cluster at $(DASK_SCHEDULER)
	$(BIN)/python -m pipelines.ingest --config $(CONFIG) --runner=pipelines.runners.dask.DaskRunner \
		--dask_client_address=$(DASK_SCHEDULER) $(INGEST_FLAGS) $(RUNNER_FLAGS)

run-flink: install ## Ingest with configs/flink.yaml on Flink at $(FLINK_MASTER) ([local]: embedded)
	$(BIN)/python -m pipelines.ingest --config configs/flink.yaml --flink_master='$(FLINK_MASTER)' \
		$(if $(FLINK_JOB_SERVER_JAR),--flink_job_server_jar=$(FLINK_JOB_SERVER_JAR)) \
		$(INGEST_FLAGS) $(RUNNER_FLAGS)

run-dataflow: install-gcp ## Ingest with configs/dataflow.yaml on Dataflow (GCP_PROJECT, GCP_REGION, GCS_BUCKET, MILVUS_URI)
	@test -n "$(GCP_PROJECT)" && test -n "$(GCP_REGION)" && test -n "$(GCS_BUCKET)" \
		&& test -n "$(MILVUS_URI)" || { echo "set GCP_PROJECT, GCP_REGION, GCS_BUCKET and MILVUS_URI" >&2; exit 2; }
	$(BIN)/python -m pipelines.ingest --config configs/dataflow.yaml \
		--project=$(GCP_PROJECT) --region=$(GCP_REGION) \
		--temp_location=gs://$(GCS_BUCKET)/tmp --staging_location=gs://$(GCS_BUCKET)/staging \
		--dead_letter_path=gs://$(GCS_BUCKET)/dead_letters/dl $(INGEST_FLAGS) $(RUNNER_FLAGS)

RECALL_BENCH_FLAGS ?= --sizes 1000,10000
bench: install-bench ## Benchmark ingestion against the peers, then sync, search, recall and Ctrl-C (~45 min; BENCH_FLAGS, SYNC_BENCH_FLAGS, SEARCH_BENCH_FLAGS, RECALL_BENCH_FLAGS)
	$(BIN)/python -m bench.run --json work/bench/report.json --markdown work/bench/report.md $(BENCH_FLAGS)
	$(BIN)/python -m bench.sync --json work/bench/sync.json --markdown work/bench/sync.md $(SYNC_BENCH_FLAGS)
	$(BIN)/python -m bench.search --json work/bench/search.json --markdown work/bench/search.md $(SEARCH_BENCH_FLAGS)
	$(BIN)/python -m bench.recall --json work/bench/recall.json --markdown work/bench/recall.md $(RECALL_BENCH_FLAGS)
	$(BIN)/python -m bench.interrupt --json work/bench/interrupt.json --markdown work/bench/interrupt.md

test: install-test client-venvs $(if $(findstring prism,$(ENGINES)),$(PRISM)) ## Run the tests; the engine tests on the FnApiRunner, and on Prism where Go is
	$(if $(findstring prism,$(ENGINES)),,@echo "ENGINES=$(ENGINES): the engine tests run without Prism (make prism needs Go)")
	$(BIN)/python -m pytest --engines=$(ENGINES) $(PYTEST_ARGS)

lint: install-dev ## ruff (lint + format check), mypy, and the layer contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy transforms pipelines tests bench
	$(BIN)/lint-imports

format: install-dev ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

constraints: install-dev ## Rewrite constraints.txt from what $(VENV) holds now
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean: ## Remove the demo's data, caches and build files (keeps $(VENV))
	rm -rf work build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
