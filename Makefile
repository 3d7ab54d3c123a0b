# Two commands set up a fresh machine: `make run` (train if needed, then serve) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv holds the runtime set and the development tools (requirements-dev.txt includes
# requirements.txt); the image installs the runtime set only.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv run migrate train stack test soak first-run lint format repro versions bench \
	backup restore compose-test clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv with the pinned requirements (runtime + development)

migrate: venv  ## bring the app database and MLflow's store to the current schema (creates them)
	$(BIN)/python -m pipeline.cli migrate

train: migrate  ## run the pipeline for models that have no champion yet
	$(BIN)/python -m pipeline.cli train --if-missing

run: train  ## set up, train if the registry is empty, then serve (api, worker, redis/prometheus if needed)
	exec bash deploy/stack.sh

stack: venv  ## native launcher only: api + worker (+ redis, prometheus) under supervisord
	exec bash deploy/stack.sh

repro: venv  ## dvc repro in the project workspace
	$(BIN)/dvc repro

versions: venv  ## registry versions with aliases
	$(BIN)/python -m pipeline.cli versions

lint: venv  ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv lint  ## the whole suite (lint, unit, integration against real services)
	$(BIN)/pytest

soak: venv  ## long soak variants of the reliability tests (not part of make test)
	$(BIN)/pytest -m soak

first-run: venv  ## a fresh clone's `make run` with production params, as a newcomer runs it (CI)
	$(BIN)/pytest -m first_run tests/deploy/test_first_run.py

bench: venv  ## benchmarks under bench/ (print figures; run on a quiet machine, needs wrk)
	$(BIN)/python -m bench.bench_pipeline
	$(BIN)/python -m bench.bench_retrain
	$(BIN)/python -m bench.bench_api
	$(BIN)/python -m bench.bench_monitor
	$(BIN)/python -m bench.bench_validation

# COMPOSE=1: the docker compose stack of this folder instead (needs docker and python3, no venv).
BACKUP := $(if $(COMPOSE),python3 deploy/backup.py --compose,$(BIN)/python deploy/backup.py)

backup: $(if $(COMPOSE),,venv)  ## back up registry, artifacts, job records, prediction log to backups/ (COMPOSE=1: the compose stack)
	$(BACKUP) backup $(DEST)

restore: $(if $(COMPOSE),,venv)  ## restore a backup: make restore FROM=backups/<stamp> (stop the service first; COMPOSE=1 stops the stack itself)
	@test -n "$(FROM)" || { echo "usage: make restore FROM=backups/<stamp> [COMPOSE=1]"; exit 2; }
	$(BACKUP) restore $(FROM)

compose-test: venv  ## the compose stack, built and proven by running it (installs and starts Docker if needed)
	bash deploy/compose/test.sh

clean:  ## remove local state (registry, app database) and caches
	rm -rf var .pytest_cache .ruff_cache
