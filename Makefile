# One entry point per task. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EMU := devstack/emulators
STAMP_PY := $(VENV)/.installed
STAMP_NPM := $(EMU)/node_modules/.installed

.PHONY: help setup emulators stop run test lint bench smoke cli clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(STAMP_PY) $(STAMP_NPM) ## Create .venv, install pinned Python packages and the pinned emulators

$(STAMP_PY): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	@touch $@

$(STAMP_NPM): $(EMU)/package.json $(EMU)/package-lock.json
	cd $(EMU) && npm ci --no-audit --no-fund
	@touch $@

emulators: setup ## Start Azurite and the Cosmos DB server (idempotent)
	$(PY) -m devstack.emulators start

stop: ## Stop everything the local stack started
	-@$(PY) -m devstack.run stop 2>/dev/null || true
	$(PY) -m devstack.emulators stop

run: setup ## Run the whole app locally: emulators, Azure OpenAI simulator, Functions host
	$(PY) -m devstack.run

test: setup ## Run every test against real local services (started and stopped by the test session)
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	  $(PY) -m devstack.emulators reap --state-dir .devstack/test || true; \
	  exit $$status

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# URL / KEY default to the azd environment (SERVICE_API_URI; FUNCTION_KEY or az functionapp keys).
smoke: setup ## Check a deployed app right after `azd up` (URL=... KEY=... to test another)
	$(if $(KEY),FUNCTION_KEY='$(KEY)') $(PY) -m devstack.smoke $(if $(URL),--url '$(URL)') $(SMOKE_ARGS)

bench: setup ## Benchmarks: print JSON figures
	$(PY) -m bench

cli: setup ## Operator CLI for queue jobs (docs/jobs-cli.md): make cli ARGS="poison list"
	$(PY) -m cli $(ARGS)

clean: stop ## Remove local state (.devstack)
	rm -rf .devstack
