# Quick start: `make demo` (whole graph on the bundled sample) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.recsys-installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

help:
	@echo "make demo            install, materialise the whole graph on the sample, print the evaluation"
	@echo "make test            run the test suite"
	@echo "make ui              dagster dev on the same instance ($(DAGSTER_HOME))"
	@echo "make bench-pipeline  seconds and peak memory of every step: sample, synthetic_10x (BENCH_DATASETS: also synthetic_100x, synthetic_100x_dask, synthetic_10x_incremental)"
	@echo "make bench           serving benchmark (uvicorn + wrk) -> data/bench/serving.json"
	@echo "make bench-scale     request cost and memory at 8k, 97k and 1M items -> data/bench/serving_scale.json"
	@echo "make soak            10 minutes of mixed traffic with reloads, shadow, canary, a Redis restart -> data/bench/soak.json"
	@echo "make serve           the recommendation service on :8000 (registry champion)"
	@echo "make lint            ruff"

$(PYTHON):
	python3 -m venv $(VENV)

# torch first and pinned: its CPU build, or pip pulls a multi-GB CUDA build for sentence-transformers.
$(STAMP): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

instance: $(DAGSTER_HOME)/dagster.yaml

demo: install instance
	$(PYTHON) -m recsys_assets.demo

ui: install instance
	$(VENV)/bin/dagster dev -w workspace.yaml

test: install
	$(PYTHON) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench-pipeline: install instance
	$(PYTHON) -m scripts.bench_pipeline

# the serving benchmark needs a champion (make demo) and wrk (Debian: apt-get install wrk)
bench: install instance
	@test -f models/model_registry.json || $(MAKE) demo
	@command -v wrk >/dev/null || (echo "installing wrk"; apt-get install -y -qq wrk)
	$(PYTHON) -m scripts.bench_serving

bench-scale: install instance
	@test -f models/model_registry.json || $(MAKE) demo
	@command -v wrk >/dev/null || (echo "installing wrk"; apt-get install -y -qq wrk)
	$(PYTHON) -m scripts.bench_scale

# the service for SOAK_MINUTES (10) at half its capacity while models, Redis and the log change
soak: install instance
	@test -f models/model_registry.json || $(MAKE) demo
	$(PYTHON) -m scripts.soak

serve: install
	$(VENV)/bin/uvicorn --factory recsys_service.app:create_app --port $${PORT:-8000}

.PHONY: help install instance demo ui test lint bench-pipeline bench bench-scale soak serve
