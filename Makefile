# The two commands: `make up` runs BizCloud on its embedded defaults, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
BIZCLOUD := $(VENV)/bin/bizcloud
export PATH := $(CURDIR)/$(VENV)/bin:/usr/local/go/bin:$(PATH)

.PHONY: setup build up down test lint unit e2e bench

setup:            ## Debian packages and the virtualenv (idempotent)
	@bash scripts/setup.sh

build: setup      ## etcd, Kubernetes, kwok and crictl from pinned Go modules (cached)
	@$(BIZCLOUD) cluster build

up: build         ## local cluster + sample service; prints the endpoints
	@$(BIZCLOUD) up

down:             ## stop everything `make up` started
	@if [ -x $(BIZCLOUD) ]; then $(BIZCLOUD) down; fi

lint: setup       ## ruff, mypy (strict) and the import-layer contract
	@$(VENV)/bin/ruff check bizcloud tests bench examples
	@$(VENV)/bin/mypy
	@MYPYPATH=examples/demo $(VENV)/bin/mypy -p demoapp
	@$(VENV)/bin/lint-imports

test: build lint  ## the whole suite, end-to-end tests against the real cluster included
	@$(VENV)/bin/pytest -ra

unit: setup       ## only the tests that need no cluster
	@$(VENV)/bin/pytest -ra -m "not e2e"

bench: build      ## benchmarks; figures go to bench/results/ and the README
	@$(VENV)/bin/python -m bench
