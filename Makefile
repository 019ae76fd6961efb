# The two entry points. Each one sets itself up first (env/setup.sh is a no-op
# when .venv already matches env/requirements.txt).
PROFILE ?= smoke
PY := .venv/bin/python

.PHONY: setup run test test-fast lab clean-runs

setup:
	@bash env/setup.sh

run: setup  ## all notebooks through papermill -> runs/$(PROFILE)/
	$(PY) -m lib.run --profile $(PROFILE)

test: setup  ## unit tests + notebook tests (papermill smoke run, then nbval)
	$(PY) -m pytest

test-fast: setup  ## unit tests only
	$(PY) -m pytest -m "not notebook"

lab: setup
	.venv/bin/jupyter lab notebooks/
