# The two entry points. Each one sets itself up first (env/setup.sh is a no-op
# when .venv already matches env/requirements.txt).
PROFILE ?= smoke
PY := .venv/bin/python

.PHONY: setup data lint browser run test test-fast lab clean-runs nmr-model nmr-replicates figures bench strip hooks help

setup:
	@bash env/setup.sh

data: setup  ## Fashion-MNIST: Debian package, else the official files (checksummed), else a message
	@bash env/get_data.sh

browser: setup  ## what the browser test needs: Debian's chromium (apt-get as root) and playwright in .venv
	@bash env/get_browser.sh

run: data  ## all notebooks through papermill -> runs/$(PROFILE)/
	$(PY) -m lib.run --profile $(PROFILE)

lint: setup  ## ruff check with the rules in pyproject.toml (code, tests, bench, notebooks) and ruff format --check
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: data lint  ## lint, unit tests + notebook tests (papermill smoke run, then nbval) + the browser test (when chromium is there)
	$(PY) -m pytest

test-fast: data  ## unit tests without the notebook, browser and slow ones (under a minute on 2 cores)
	$(PY) -m pytest -m "not notebook and not browser and not slow"

lab: setup  ## JupyterLab on notebooks/ (as root too: CI machines and containers)
	.venv/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

nmr-model: setup  ## retrain the shipped NMR denoiser models/nmr_unet_cpu.pt (cpu profile, ~12 min on 2 cores)
	$(PY) -m lib.nmr train --profile cpu --out models/nmr_unet_cpu.pt --overwrite

nmr-replicates: setup  ## measured 13C/31P/1H runs for bench/nmr_replicates.py: NMRPy's test data (pip, sha256-checked) -> data/nmr_replicates/
	$(PY) env/get_nmr_replicates.py

figures: data  ## every figure of README and docs/ from its run (bench/figures.py; records in docs/figures/figures.json)
	$(PY) bench/figures.py

bench: setup  ## one benchmark claim into bench/ from a committed tree, provenance recorded: make bench NAME=em_speed (no NAME: the list; ARGS="..." writes a variant under runs/bench/)
	$(PY) bench/run.py $(NAME) $(ARGS)

strip: setup  ## remove outputs and run metadata from notebooks/*.ipynb (what is committed)
	$(PY) env/strip_notebooks.py

hooks:  ## a git pre-commit hook that refuses notebooks with outputs (git config core.hooksPath env/hooks)
	git config core.hooksPath env/hooks

clean-runs:  ## delete runs/ (your work!): lists, deletes only with CONFIRM=1 on the command line; ONLY=<profile> for runs/<profile>/; nothing outside runs/
	@CONFIRM="$(if $(filter command line,$(origin CONFIRM)),$(CONFIRM))" ONLY="$(ONLY)" bash env/clean_runs.sh

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' Makefile | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 14
