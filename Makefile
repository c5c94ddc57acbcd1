# Two commands on a fresh machine (Python 3.11+ and make): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint format demo bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The Prometheus scrape and promtool tests need both binaries: scripts/install-prometheus puts
# them into .venv/bin (or says loudly why it cannot; the test summary then shows the skips).
test: $(STAMP)
	./scripts/install-prometheus
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest

# The type checker's settings are in pyproject.toml ([tool.mypy]: strict for aggregates/ and
# eventstore/); an ignore it does not need fails the build.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: $(STAMP)
	$(VENV)/bin/claire demo

bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.lock
	@echo "run e.g.: $(PY) benchmarks/bench_eventstore.py"

# Regenerate the pinned lock files from pyproject.toml (needs the network).
lock: $(STAMP)
	$(PY) -m pip install --quiet pip-tools
	$(VENV)/bin/pip-compile --quiet --strip-extras --extra dev --output-file requirements.lock pyproject.toml
	$(VENV)/bin/pip-compile --quiet --strip-extras --extra dev --extra bench --output-file requirements-bench.lock pyproject.toml

clean:
	rm -rf $(VENV) .data .pytest_cache .hypothesis
