# Two commands do all the set-up from a fresh clone:
#   make demo   - sets up .venv and runs the demo (an instrumented sample package, development mode)
#   make test   - sets up .venv (+ Chromium for browser tests, Go for the collector regexp tests), runs the
#                 whole test suite, then the core and behaviour suites on every other pyenv CPython
#                 (scripts/test-pythons.sh)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# pip shows what it collects and downloads (with progress bars on a terminal); this adds the time taken.
PIP_INSTALL = start=$$(date +%s) && $(BIN)/python -m pip install --progress-bar on
TOOK = echo "==> Done in $$(( $$(date +%s) - start )) s."

.PHONY: setup demo test bench clean

$(BIN)/python:
	@echo "==> Creating $(VENV) with $(PYTHON) and upgrading pip in it (a few seconds)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The demo needs only usagetrace and its report extra, not the test tools.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> Installing usagetrace with its report extra into $(VENV) (first run only): the OpenTelemetry"
	@echo "    SDK, protobuf, wrapt, platformdirs and DuckDB, 12 packages, ~100 MB installed; usually 15-60 s."
	@$(PIP_INSTALL) -e '.[report]' && $(TOOK)
	@touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> Installing usagetrace with its dev extra into $(VENV) (first run only): pytest, DuckDB, chdb,"
	@echo "    pandas/pyarrow, Dash/Flask, Playwright, the rotel collector ... ~75 packages, ~1.5 GB installed;"
	@echo "    several minutes, mostly downloading."
	@$(PIP_INSTALL) -e '.[dev]' && $(TOOK)
	@touch $@

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py

test: setup
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-go.sh
	$(BIN)/python -m pytest
	bash scripts/test-pythons.sh

bench: setup
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache
