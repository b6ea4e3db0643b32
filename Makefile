# Two commands do all the set-up from a fresh clone:
#   make demo   - sets up .venv and runs the demo (an instrumented sample package, development mode)
#   make test   - sets up .venv (+ Chromium for browser tests, Go for the collector regexp tests) and runs the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py

test: setup
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-go.sh
	$(BIN)/python -m pytest

bench: setup
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .demo .pytest_cache
