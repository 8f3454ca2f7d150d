PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench bench-smoke peer-suites clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check analytics tests
	$(BIN)/ruff format --check analytics
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/durable.py

bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke

# Segment's and RudderStack's own tests against this package (their packages: `make bench`)
peer-suites: $(STAMP)
	$(BIN)/python bench/peer_suites.py

clean:
	rm -rf $(VENV) build *.egg-info bench/.venv-peers bench/.logs
