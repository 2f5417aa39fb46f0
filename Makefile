# Mendwell. `make run` serves the demo clinic; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test check lint typecheck audit bench clean demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mendwell serve --demo --host 127.0.0.1 --port 8000

demo: $(STAMP)
	$(BIN)/mendwell demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: lint typecheck audit

lint: $(STAMP)
	$(BIN)/ruff check server signaling escalation web tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Known vulnerabilities of every installed distribution (PyPI's advisory data, one query
# per package and version); a finding fails the check. Fix it by raising the package's
# lower bound in pyproject.toml; where that cannot be done yet, add
# `--ignore-vuln <ID>` to PIP_AUDIT_IGNORE with the reason in a comment beside it.
# A distribution PyPI does not answer for is listed as "could not be audited" and does
# not fail the check; PIP_AUDIT_FLAGS=--strict makes it fail.
PIP_AUDIT_IGNORE ?=
PIP_AUDIT_FLAGS ?=
audit: $(STAMP)
	$(BIN)/pip-audit --local --skip-editable --progress-spinner off $(PIP_AUDIT_IGNORE) $(PIP_AUDIT_FLAGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
