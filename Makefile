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

# The suite runs on TEST_WORKERS pytest-xdist workers (one per core by default); the
# browser tests run one after another on one of them (tests/conftest.py). TEST_WORKERS=0
# runs everything in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

check: lint typecheck audit

lint: $(STAMP)
	$(BIN)/ruff check server signaling escalation web tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Known vulnerabilities of every installed distribution (PyPI's advisory data, one query
# per package and version); a finding fails the check. Fix it by raising the package's
# lower bound in pyproject.toml; where that cannot be done yet, add
# `--ignore-vuln <ID>` to PIP_AUDIT_IGNORE with the reason in a comment beside it.
# pip-audit says "No known vulnerabilities found" even when PyPI answered for none of
# them (a registry mirror without the per-version JSON API), so the summary line below
# says how many were audited; PIP_AUDIT_FLAGS=--strict fails on any not audited.
PIP_AUDIT_IGNORE ?=
PIP_AUDIT_FLAGS ?=
audit: $(STAMP)
	rm -f $(VENV)/pip-audit.json; \
	$(BIN)/pip-audit --local --skip-editable --progress-spinner off --desc off \
		--format json --output $(VENV)/pip-audit.json $(PIP_AUDIT_IGNORE) $(PIP_AUDIT_FLAGS); \
	status=$$?; $(BIN)/python -c 'import json, sys; deps = json.load(open(sys.argv[1]))["dependencies"]; \
		bad = [(d["name"], d["version"], v["id"], v["fix_versions"]) for d in deps for v in d.get("vulns", [])]; \
		skipped = [d["name"] for d in deps if "skip_reason" in d]; \
		[print("VULNERABLE", *row) for row in bad]; \
		print(f"pip-audit: {len(deps) - len(skipped)} of {len(deps)} distributions audited, {len(bad)} known vulnerabilities" \
		      + (f"; not audited (PyPI gave no data): {len(skipped)}" if skipped else ""))' $(VENV)/pip-audit.json; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
