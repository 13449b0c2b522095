# virtstack — the two commands a fresh machine needs are `make up` and `make test` (see README.md).
SHELL := /bin/bash
ENV := . scripts/env.sh &&
STACK ?= dev

.PHONY: setup setup-up up test unit integration lint test-go preview destroy bench gitops-e2e

setup:            ## install and start everything (idempotent)
	scripts/setup.sh

# What `make up` needs of setup: every step but those no stack file asks for (the libvirt plugin).
setup-up:
	scripts/setup.sh --for up

up: setup-up      ## bring up the default stack and show where its VMs are
	$(ENV) scripts/up.sh $(STACK)

test: setup       ## the whole test suite (runs `make setup` first: seconds when everything is there)
	$(ENV) .venv/bin/python -m pytest

unit:
	$(ENV) .venv/bin/python -m pytest -m "not integration"

integration:
	$(ENV) .venv/bin/python -m pytest -m integration

lint:             ## ruff, ruff format and mypy; any finding fails
	$(ENV) .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

# -mod=mod as in build-toolchain.sh, whose build leaves the module cache warm (a setup that took
# pulumi from PATH fetches the few modules from the proxy once). -count=1: a cached pass would hide
# a changed fake interpreter or environment.
test-go:          ## `go test` of the language host's protocol handlers (in-memory gRPC, fake python)
	cd tools/pulumi-language-python && export GOFLAGS=-mod=mod && go vet ./... && go test -count=1 ./...

preview:
	$(ENV) pulumi preview --stack $(STACK)

destroy:
	$(ENV) pulumi destroy --yes --stack $(STACK)

bench:            ## benchmarks (about an hour, unattended): prints a table, writes bench/RESULTS.md and bench/results.json
	$(ENV) .venv/bin/python -m bench.run

# Not part of `make test` (it builds gitea and act once, then takes minutes): README, "GitOps".
gitops-e2e:       ## the three workflows run by act against a Gitea on loopback, state on PostgreSQL
	$(ENV) .venv/bin/python -m tests.gitops.e2e
