# sharedcare: the two commands a newcomer needs are `make demo` and `make test`; both install what
# they need (uv, Python packages with all extras, npm packages, the FHIR definitions) by themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
DEFS := src/sharedcare/fhir/definitions/data/VERSION

.PHONY: help setup demo serve test test-fast lint bench clean

help:
	@echo "make demo   - install what is needed, generate a synthetic London into var/demo and serve the app on it"
	@echo "make test   - install what is needed, then run the whole test suite (SQLite and PostgreSQL)"
	@echo "make lint   - ruff and mypy (strict) on src/"
	@echo "make bench  - run the benchmarks in bench/ and print side-by-side ratios"

.make/uv:
	@mkdir -p .make
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@touch $@

.make/python: .make/uv pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --all-groups
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

$(DEFS): node_modules/.package-lock.json .make/python src/sharedcare/fhir/definitions/build.py
	$(UV) run python -m sharedcare.fhir.definitions.build node_modules

.make/postgres:
	@# The tests start their own PostgreSQL server from the machine's binaries; install them if absent.
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@mkdir -p .make && touch $@

setup: .make/python $(DEFS)

demo: setup
	$(UV) run sharedcare demo --host $(HOST) --port $(PORT)

serve: setup
	$(UV) run sharedcare serve --host $(HOST) --port $(PORT)

test: setup .make/postgres
	$(UV) run pytest -n auto $(PYTEST_ARGS)

test-fast: setup
	$(UV) run pytest -n auto -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(UV) run ruff check src tests bench
	$(UV) run mypy

bench: setup
	$(UV) run python -m bench.run

clean:
	rm -rf .make var .pytest_cache .mypy_cache .ruff_cache
