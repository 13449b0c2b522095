# virtstack — the two commands a fresh machine needs are `make up` and `make test` (see README.md).
SHELL := /bin/bash
ENV := . scripts/env.sh &&
STACK ?= dev

.PHONY: setup up test unit integration lint preview destroy bench

setup:            ## install and start everything (idempotent)
	scripts/setup.sh

up: setup         ## bring up the default stack and show where its VMs are
	$(ENV) scripts/up.sh $(STACK)

test:             ## the whole test suite (integration tests need `make setup` first)
	$(ENV) .venv/bin/python -m pytest

unit:
	$(ENV) .venv/bin/python -m pytest -m "not integration"

integration:
	$(ENV) .venv/bin/python -m pytest -m integration

lint:
	$(ENV) .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

preview:
	$(ENV) pulumi preview --stack $(STACK)

destroy:
	$(ENV) pulumi destroy --yes --stack $(STACK)

bench:            ## benchmarks (~20 min, unattended): prints a table, writes bench/RESULTS.md and bench/results.json
	$(ENV) .venv/bin/python -m bench.run
