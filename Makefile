# lm-co2: two commands do all the set-up on a fresh machine.
#   make run   creates the environment, writes a sample day and runs the daily flow locally
#   make test  creates the environment and runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
INFRA_VENV := .venv-infra
BIN := $(VENV)/bin
RUN_DATE ?= 2026-12-01
TRIPS ?= 500

# Nothing in tests, CI or the local profile may reach beyond 127.0.0.1.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export AWS_EC2_METADATA_DISABLED := true
export NO_GCE_CHECK := True
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false
export CHECKPOINT_DISABLE := 1
export CKV_SKIP_PACKAGE_UPDATE_CHECK := true
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2 := false
export PREFECT_HOME ?= $(CURDIR)/var/prefect
# matplotlib's font cache is per user by default, so every clone and virtual environment shared
# one file; one written from another environment made charts fall back from the STIX fonts.
export MPLCONFIGDIR ?= $(CURDIR)/var/matplotlib
export PREFECT_LOGGING_LEVEL ?= WARNING
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: run test env infra-env sample lint typecheck bench real clean infra-check helm-template helm-install

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,kubernetes]"
	touch $@

$(INFRA_VENV)/.installed: constraints-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet -r constraints-infra.txt
	touch $@

env: $(VENV)/.installed

infra-env: $(INFRA_VENV)/.installed

sample: env
	$(BIN)/lm-co2 sample --date $(RUN_DATE) --trips $(TRIPS)

run: sample
	$(BIN)/lm-co2 run --date $(RUN_DATE) --force

test: env infra-env lint typecheck
	$(BIN)/python -m pytest -q

lint: env
	$(BIN)/ruff check compute flows tests benchmarks

typecheck: env
	$(BIN)/mypy compute flows

bench: env
	$(BIN)/python benchmarks/bench_compute.py --bench-dir var/bench

real: env
	$(BIN)/python -m flows.real

clean:
	rm -rf var

infra-check: env infra-env
	scripts/check_infra.sh

helm-template:
	DRY_RUN=1 helm/install.sh

helm-install:
	helm/install.sh
