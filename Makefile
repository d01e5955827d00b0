# `make study` and `make test` each work as the very first command on a fresh machine:
# they create .venv and install the pinned project when it is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STUDY ?= quick
FASHION_MNIST := /usr/share/datasets/fashion-mnist
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup study test report ui params lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	@# Debian, as root: the original Fashion-MNIST files, so the quick study runs offline
	@if [ -f /etc/debian_version ] && [ "$$(id -u)" = 0 ] && [ ! -d $(FASHION_MNIST) ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "warning: dataset-fashion-mnist not installed; the study will download Fashion-MNIST"; fi
	touch $@

# quick: the committed params.yaml; any other study is composed from conf/study/$(STUDY).yaml
study: setup
ifeq ($(STUDY),quick)
	dvc repro
else
	dvc exp run -S study=$(STUDY)
endif

test: setup
	$(PY) -m pytest

# tables and figures again from the tracked results in metrics/ and plots/, no training
report: setup
	dvc repro --force --single-item report

ui: setup
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# rewrite params.yaml from conf/ for $(STUDY) (what `dvc exp run -S study=...` does)
params: setup
	$(PY) -m pipeline.studies $(STUDY) params.yaml

# after changing a pin in pyproject.toml: re-resolve and record the whole tree
lock: setup
	$(PY) -m pip freeze --exclude-editable > requirements.lock
