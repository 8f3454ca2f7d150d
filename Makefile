PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The suite's core for `make test-deps`: the spec's rules (python-dateutil), retries and
# backoff waits (backoff), the wire, proxies and errors over HTTP (requests).
CORE_TESTS := tests/test_spec.py tests/test_validation.py tests/test_retry.py \
	tests/test_engine_retry.py tests/test_wire.py tests/test_encoding.py \
	tests/test_proxies.py tests/test_on_error.py tests/test_http1.py tests/test_redirects.py
# The runtime dependencies, from the installed metadata (the ranges live in pyproject.toml
# only): `oldest` pins each to its range's lower bound, `newest` names it (pip then takes
# the newest release its range allows).
DEPS = $(BIN)/python -c 'import re, sys; from importlib.metadata import requires; \
	deps = [r for r in requires("analytics-client") if ";" not in r]; \
	pin = r"\1==\2" if sys.argv[1] == "oldest" else r"\1"; \
	print(" ".join(re.sub(r"^([A-Za-z0-9_.-]+).*>=\s*([0-9][0-9A-Za-z.]*).*$$", pin, d) for d in deps))'
DEPS_TOOLS := pytest pytest-timeout

.PHONY: dev test lint demo dist test-deps bench bench-smoke peer-suites clean

# `make` alone: the development venv.
dev: $(STAMP)

# An editable install that mypy and IDEs see: pyproject.toml maps the package root to the
# project root, so setuptools writes a plain .pth path entry (no import-hook finder).
# Tooling comes from pyproject.toml's dependency groups, not from user extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check analytics tests
	$(BIN)/ruff format --check analytics
	$(BIN)/mypy

dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	@ls dist

# The oldest and the newest allowed versions of the runtime dependencies, each in its own
# venv (driven by .venv's pip), against the suite's core.
test-deps: $(STAMP)
	@set -e; for end in oldest newest; do \
	  venv=.venv-deps-$$end; \
	  pins="$$($(DEPS) $$end)"; \
	  rm -rf $$venv; $(PYTHON) -m venv --without-pip $$venv; \
	  pip="$(BIN)/python -m pip --python $$venv/bin/python"; \
	  $$pip install -q --upgrade --upgrade-strategy eager -e . $$pins $(DEPS_TOOLS); \
	  echo "== $$end: $$($$pip freeze | grep -i -E '^(requests|backoff|python-dateutil)==' | tr '\n' ' ')"; \
	  $$pip check; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS); \
	done

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/durable.py

bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke

# Segment's and RudderStack's own tests against this package (their packages: `make bench`)
peer-suites: $(STAMP)
	$(BIN)/python bench/peer_suites.py

clean:
	rm -rf $(VENV) .venv-deps-* build dist *.egg-info bench/.venv-peers bench/.logs
