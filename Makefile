# Every target bootstraps .venv by itself: a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
STAMP_BENCH := $(VENV)/.stamp-bench
STATE  ?= $(CURDIR)/.state

.PHONY: run test lint typecheck bench clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	mkdir -p $(STATE)
	$(BIN)/aibridged serve --demo --state-dir $(STATE) --config config/aibridged.dev.toml

test: $(STAMP_TEST)
	$(BIN)/python -m pytest -q --durations=15
	$(BIN)/ruff check aibridged tests bench
	$(BIN)/mypy

lint: $(STAMP_TEST)
	$(BIN)/ruff check aibridged tests bench
	$(BIN)/ruff format --check aibridged tests bench
	$(BIN)/mypy

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@ $(STAMP_TEST) $(STAMP_RUN)

# Uses wrk for saturated load when installed (apt-get install wrk), else a Python load generator.
bench: $(STAMP_BENCH)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache

# Regenerates docs/screenshots/*.png from the dashboard's browser tests (needs chromium).
screenshots: $(STAMP_TEST)
	AIBRIDGED_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q \
		tests/test_dashboard_signin.py tests/test_dashboard_providers.py \
		tests/test_dashboard_users.py tests/test_dashboard_accessibility.py \
		tests/test_dashboard_sessions.py
