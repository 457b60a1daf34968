# Every target installs what is missing first, then does its job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS ?= edge,dashboard,trainer,test
comma := ,
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)-$(subst $(comma),-,$(EXTRAS))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PYTEST_ARGS ?=

.PHONY: install system-deps deploy-deps demo test test-deploy bench train cv faults security check-config clean help

help:
	@echo "make demo    install what is missing, then run the whole system"
	@echo "make test    install what is missing, then run the tests"
	@echo "make test-deploy build every image, run the system in containers and prove it works (needs root)"
	@echo "make bench   run the benchmarks (each prints one JSON line of figures)"
	@echo "make train   cross-validate, retrain and package the released model from ../shared/datasets/all-aria (DATA=DIR)"
	@echo "make cv      grouped 5-fold cross-validation of the training recipe (runs/cv, resumable)"
	@echo "make faults  run the full fault suite"
	@echo "make security run the full hostile-input suite against the running system"

system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v pg_dump >/dev/null || missing="$$missing postgresql-client"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

install: system-deps $(STAMP)

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's engine and compose, and debootstrap for a local base image when no registry answers.
deploy-deps:
	@missing=""; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Starts a private dockerd under var/docker-engine unless one answers; prints one JSON line of what it proved.
test-deploy: install deploy-deps
	$(SUDO) $(PY) -m scripts.test_deploy $(DEPLOY_ARGS)

bench: install
	@for bench in bench/*.py; do echo "== $$bench"; $(PY) $$bench || exit 1; done

DATA ?= ../shared/datasets/all-aria
VERSION ?= 1.5.0
CV_EPOCHS ?= 40
CV_RUN = $(PY) -m trainer cv --data $(DATA) --folds 5 --epochs $(CV_EPOCHS) --robustness-images 1000 --out runs/cv
SIGNING_KEY := $(shell $(PYTHON) -c "import json; print(json.load(open('confs.json'))['trainer']['signing_key'])")
# The release: cross-validate the recipe (runs/cv, resumable), train it (a final fit with trainer.final_fit), package with the CV figures.
train: install
	@[ -f "$(SIGNING_KEY)" ] || $(PY) -m trainer keys --trust
	$(CV_RUN)
	$(PY) -m trainer train --data $(DATA) --quiet --run-dir runs/release
	$(PY) -m trainer package --run runs/release --version $(VERSION)

cv: install
	$(CV_RUN)

faults: install
	$(PY) -m pytest tests/faults -m faults --faults-scale=full $(PYTEST_ARGS)

security: install
	$(PY) -m pytest tests/security -m security --security-scale=full $(PYTEST_ARGS)

check-config: install
	$(PY) -m contracts.confs check confs.json

clean:
	rm -rf $(VENV) .pytest_cache var tests/artifacts
