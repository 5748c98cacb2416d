# jobstack: two entry points for people (deploy, test) and the steps behind them.
ENV ?= dev
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

.PHONY: deploy test bootstrap-test lint lint-python test-services test-ansible \
        test-molecule-default test-molecule-docker test-minikube bench

## deploy: build the images and deploy the stack to inventories/$(ENV) (dev = minikube)
deploy:
	scripts/bootstrap.sh deploy $(ENV)
	@case "$(ENV)" in local|dev) scripts/ensure_dockerd.sh ;; esac
	$(BIN)/ansible-playbook site.yml -i inventories/$(ENV)

## test: every check that CI runs, in order of cost
test: bootstrap-test lint lint-python test-services test-ansible test-molecule-default test-molecule-docker test-minikube

bootstrap-test:
	scripts/bootstrap.sh test

lint:
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint

lint-python:
	$(BIN)/ruff check services bench tests tools
	$(BIN)/mypy --ignore-missing-imports services/jobstack_common services/engine/engine.py services/user_interface/user_interface.py

test-services:
	$(PYTEST) tests/services

test-ansible:
	$(PYTEST) tests/ansible

test-molecule-default:
	$(BIN)/molecule test -s default

test-molecule-docker:
	scripts/ensure_dockerd.sh
	tools/offline_images/build.sh
	$(PYTEST) tests/docker
	$(BIN)/molecule test -s docker

test-minikube:
	molecule/minikube/run.sh

## bench: end-to-end throughput and latency of the services (prints JSON lines)
bench:
	$(BIN)/python bench/pipeline.py
