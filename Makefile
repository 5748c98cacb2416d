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

.PHONY: deploy test bootstrap-test lint lint-python test-services test-browser test-bench test-monitoring test-ansible test-docs \
        test-molecule-default test-molecule-docker test-molecule-operations test-molecule-rehearsal test-minikube bench

## deploy: build the images and deploy the stack to inventories/$(ENV) (dev = minikube)
# playbooks/lock.yml first: it records the sha256 of a pinned release the lock file lacks, and checks the others.
deploy:
	scripts/bootstrap.sh deploy $(ENV)
	@case "$(ENV)" in local|dev) scripts/ensure_dockerd.sh ;; esac
	$(BIN)/ansible-playbook playbooks/lock.yml -i inventories/$(ENV)
	$(BIN)/ansible-playbook site.yml -i inventories/$(ENV)

## test: every check that CI runs, in order of cost
test: bootstrap-test lint lint-python test-services test-browser test-bench test-monitoring test-ansible test-docs \
      test-molecule-default test-molecule-docker test-molecule-operations test-molecule-rehearsal test-minikube
	@$(BIN)/python tools/test_summary.py $(RESULTS)

bootstrap-test:
	scripts/bootstrap.sh test
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)

# ansible-lint caches collections under ANSIBLE_HOME; the project's own .ansible/ keeps a copy of
# jobstack.deploy installed elsewhere (~/.ansible) from shadowing this checkout.
lint:
	$(BIN)/yamllint -s .
	ANSIBLE_HOME=$(CURDIR)/.ansible $(BIN)/ansible-lint
	$(BIN)/ruff check plugins
	$(BIN)/ruff format --check plugins

lint-python:
	$(BIN)/ruff check services bench tests tools
	$(BIN)/mypy --ignore-missing-imports services/jobstack services/engine/engine.py services/user_interface/user_interface.py

test-services:
	$(PYTEST) tests/services

## test-browser: the UI's page in Debian's headless Chromium, driven by playwright, against a real UI, engine and broker (screenshot in build/test-results)
test-browser:
	$(PYTEST) tests/browser

# The comparison's baselines (Celery, Dramatiq, aio-pika) stay out of requirements-test.txt and the images.
test-bench:
	$(BIN)/pip install -q -r bench/requirements.txt
	$(PYTEST) tests/bench

## test-monitoring: promtool check/test of the alert rules, the dashboard, metric names against real services
test-monitoring:
	$(PYTEST) tests/monitoring

test-ansible:
	$(PYTEST) tests/ansible

## test-docs: links, anchors, paths, make targets and variable names in the docs exist (tools/check_docs.py)
test-docs:
	$(PYTEST) tests/docs

test-molecule-default:
	$(BIN)/molecule test -s default
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-default.txt

# dockerd, when this starts it, must not inherit the descriptor of a `flock ... make` around the
# target (the shared Docker lock would stay held for as long as the daemon runs).
test-molecule-docker:
	scripts/ensure_dockerd.sh
	tools/offline_images/build.sh
	$(PYTEST) tests/docker
	$(BIN)/molecule test -s docker
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-docker.txt

## test-molecule-operations: one local Docker deploy; drift report clean, after changes by hand, after a re-deploy; the chaos drill
test-molecule-operations:
	scripts/ensure_dockerd.sh
	tools/offline_images/build.sh
	$(BIN)/molecule test -s operations
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-operations.txt

## test-molecule-rehearsal: two regions on the Docker engine; a bad engine release stopped and rolled back in the first, the second untouched; a drain of one into the other
test-molecule-rehearsal:
	scripts/ensure_dockerd.sh
	tools/offline_images/build.sh
	$(BIN)/molecule test -s rehearsal
	@mkdir -p $(RESULTS) && echo passed > $(RESULTS)/molecule-rehearsal.txt

test-minikube:
	@mkdir -p $(RESULTS)
	molecule/minikube/run.sh | tee $(RESULTS)/molecule-minikube.out
	@if grep -q "NOT RUN" $(RESULTS)/molecule-minikube.out; then cp $(RESULTS)/molecule-minikube.out $(RESULTS)/molecule-minikube.txt; \
	 else echo passed > $(RESULTS)/molecule-minikube.txt; fi

## bench: end-to-end throughput and latency of the services (prints JSON lines)
bench:
	$(BIN)/python -m bench.pipeline

.PHONY: bench-compare bench-http bench-cluster
## bench-compare: jobstack beside Celery, Dramatiq, aio-pika and pika on one private broker (installs bench/requirements.txt)
bench-compare:
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench.compare

## bench-http: POST /jobs + polling GET /jobs/<id> through one user_interface and one engine, fixed rate and flat out (wrk)
bench-http:
	$(BIN)/python -m bench.http

## bench-cluster: the pipeline on a 3-node RabbitMQ cluster beside a 1-node broker (what replication costs)
bench-cluster:
	$(BIN)/python -m bench.cluster
