# The two commands: `make demo` (pipeline on bundled real data) and `make test` (test suite).
# Both create .venv when missing and install the pinned stack first (torch pinned to the CPU wheel).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAKE ?= ./lake
CONFIG ?= configs/nyc.yaml
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast bench-features bench-quality lint-docker clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt torch==2.13.0
	$(PY) -m pip install -q --no-deps -e .
	@# JVM class archive for the embedded Spark (faster start-ups; simcit/jvm_class_archive.py).
	@# Optional: a failure here only means slower Spark start-ups.
	-$(PY) -m simcit.jvm_class_archive
	touch $(STAMP)

setup: $(STAMP)

## Run the pipeline on the bundled Foursquare NYC data, then Amazon Scientific.
demo: $(STAMP)
	$(VENV)/bin/simcit pipeline --config configs/nyc.yaml --lake $(LAKE)
	$(VENV)/bin/simcit pipeline --config configs/scientific.yaml --lake $(LAKE)

## The full test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

## Unit tests only (no Spark, no Ray, no full-data end-to-end runs).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not spark and not ray and not slow"

bench-features: $(STAMP)
	$(PY) benchmarks/features.py

## Recommendation quality by tokenizer, 3 seeds, both datasets (about an hour each on 2 cores).
bench-quality: $(STAMP)
	$(PY) benchmarks/quality.py --dataset nyc
	$(PY) benchmarks/quality.py --dataset scientific

lint-docker: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf $(LAKE) .pytest_cache benchmarks/_work
