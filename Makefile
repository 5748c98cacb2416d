# jobstack: two entry points for people (deploy, test) and the steps behind them.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
ENV ?= dev
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
RESULTS := $(CURDIR)/build/test-results
PYTEST = $(BIN)/python -m pytest -q -p no:cacheprovider --junitxml=$(RESULTS)/$@.xml

.PHONY: deploy test bootstrap-test lint lint-python test-services test-monitoring test-ansible \
        test-molecule-default test-molecule-docker test-minikube bench

## deploy: build the images and deploy the stack to inventories/$(ENV) (dev = minikube)
deploy:
	scripts/bootstrap.sh deploy $(ENV)
	@case "$(ENV)" in local|dev) scripts/ensure_dockerd.sh ;; esac
	$(BIN)/ansible-playbook site.yml -i inventories/$(ENV)

## test: every check that CI runs, in order of cost
test: bootstrap-test lint lint-python test-services test-monitoring test-ansible test-molecule-default test-molecule-docker test-minikube
	@$(BIN)/python tools/test_summary.py $(RESULTS)

bootstrap-test:
	scripts/bootstrap.sh test
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)

lint:
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint

lint-python:
	$(BIN)/ruff check services bench tests tools
	$(BIN)/mypy --ignore-missing-imports services/jobstack_common services/engine/engine.py services/user_interface/user_interface.py

test-services:
	$(PYTEST) tests/services

## test-monitoring: promtool check/test of the alert rules, the dashboard, metric names against real services
test-monitoring:
	$(PYTEST) tests/monitoring

test-ansible:
	$(PYTEST) tests/ansible

test-molecule-default:
	$(BIN)/molecule test -s default
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-default.txt

test-molecule-docker:
	scripts/ensure_dockerd.sh
	tools/offline_images/build.sh
	$(PYTEST) tests/docker
	$(BIN)/molecule test -s docker
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-docker.txt

test-minikube:
	@mkdir -p $(RESULTS)
	molecule/minikube/run.sh | tee $(RESULTS)/molecule-minikube.out
	@if grep -q "NOT RUN" $(RESULTS)/molecule-minikube.out; then cp $(RESULTS)/molecule-minikube.out $(RESULTS)/molecule-minikube.txt; \
	 else echo passed > $(RESULTS)/molecule-minikube.txt; fi

## bench: end-to-end throughput and latency of the services (prints JSON lines)
bench:
	$(BIN)/python -m bench.pipeline
