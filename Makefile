# `make study` and `make test` each work as the very first command on a fresh machine:
# they create .venv and install the pinned project when it is missing.
SHELL := /bin/bash
# the interpreter the venv is made from, and the pins it installs (requirements.lowest: the
# lower bounds of pyproject.toml)
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= requirements.lock
PY := $(VENV)/bin/python
STUDY ?= quick
FASHION_MNIST := /usr/share/datasets/fashion-mnist
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup study test test-e2e report ui tracking-server params lock gpu-check gpu-wheels snapshot

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,ray,imagenet]'
	@# Debian, as root: the original Fashion-MNIST files, so the quick study runs offline
	@if [ -f /etc/debian_version ] && [ "$$(id -u)" = 0 ] && [ ! -d $(FASHION_MNIST) ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) \
		|| echo "warning: dataset-fashion-mnist not installed; the study will download Fashion-MNIST"; fi
	touch $@

# quick: the committed params.yaml; any other study is composed from conf/study/$(STUDY).yaml.
# pipeline/study/repro.py checks every input first, then runs dvc repro (or dvc exp run -S study=...; with
# RAY, params.yaml is rewritten for the study and the items fan out), and puts back the last good
# results of a stage that fails.
# RAY=local fans the items out over this machine's GPUs or cores (the default where Ray is installed:
# two 1-thread items at once beat one 2-thread item on a 2-core CPU, benchmarks/RESULTS.md), RAY=auto or
# RAY=host:port over a Ray cluster (pipeline/study/fanout.py); RAY= runs them one after another.
RAY ?= $(shell $(PY) -c 'import ray' 2>/dev/null && echo local)
study: setup
	$(PY) -m pipeline.study.repro --study $(STUDY) $(if $(RAY),--ray $(RAY))

# test: every test but those marked e2e, side by side in JOBS processes (pytest-xdist; auto: one per core,
# 0: pytest's own process), spread test by test (--dist load): test_models.py alone is over half of its
# time. test-e2e: the rest, each a real dvc repro, study command or Ray fan-out on a tiny study, one after
# another: each already fills the cores with its own processes (dvc, Ray's items, MLflow), and two at once
# took 19.6 min against about 13 for the whole old suite one by one (benchmarks/RESULTS.md, issue 25).
# Together they are the whole suite; CI (.ci/run) runs both. The xdist flags live here, not in pyproject's
# addopts, so a machine without pytest-xdist (the GPU check) still runs pytest.
JOBS ?= auto
test: setup
	$(PY) -m pytest -n $(JOBS) --dist load -m "not e2e"

test-e2e: setup
	$(PY) -m pytest -m e2e

# tables and figures again from the tracked results in metrics/ and plots/, no training
report: setup
	$(PY) -m pipeline.study.repro -- --force --single-item report

# the MLflow UI over the default store: every item run and the report run (pipeline/study/report_run.py)
HOST ?= 127.0.0.1
PORT ?= 5000
ui: setup
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host $(HOST) --port $(PORT)

# one MLflow server for the runs of every node of a cluster (workers: MLFLOW_TRACKING_URI=http://HOST:PORT),
# over the same mlflow.db and mlruns/ as the default store. Loopback unless HOST says otherwise (README).
tracking-server: setup
	mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --artifacts-destination $(CURDIR)/mlruns \
		--host $(HOST) --port $(PORT)

# the results of the study the workspace last ran, kept in studies/$(STUDY)/ to be committed beside the quick
# study's (the conclusive study's report is the project's results; README, "The conclusive CPU study")
snapshot: setup
	$(PY) -m pipeline.study.snapshot $(STUDY)

# rewrite params.yaml from conf/ for $(STUDY) (what `dvc exp run -S study=...` does)
params: setup
	$(PY) -m pipeline.study.compose $(STUDY) params.yaml

# after changing a pin in pyproject.toml: re-resolve and record the whole tree
lock: setup
	$(PY) -m pip freeze --exclude-editable > requirements.lock

# the GPU check (benchmarks/gpu_check.py): on a GPU machine, or DEVICE=cpu for its smoke mode (CI).
# No setup: a GPU machine keeps its own torch; the venv's Python is used where there is one.
DEVICE ?= cuda
OUT ?= gpu-check-results
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py --device $(DEVICE) --out $(OUT) \
		$(if $(ONLY),--only $(ONLY)) $(if $(COMMIT),--commit $(COMMIT))

# Python 3.12 wheels of what the lent GPU machine lacks (dvc, mlflow, ...), into .whl/ for gpu-check
gpu-wheels: setup
	$(PY) benchmarks/gpu_wheels.py
