# The two entry points. Each one sets itself up first (env/setup.sh is a no-op
# when .venv already matches env/requirements.txt).
PROFILE ?= smoke
PY := .venv/bin/python

.PHONY: setup data run test test-fast lab clean-runs nmr-model

setup:
	@bash env/setup.sh

data: setup  ## Fashion-MNIST: Debian package, else the official files (checksummed), else a message
	@bash env/get_data.sh

run: data  ## all notebooks through papermill -> runs/$(PROFILE)/
	$(PY) -m lib.run --profile $(PROFILE)

test: data  ## unit tests + notebook tests (papermill smoke run, then nbval)
	$(PY) -m pytest

test-fast: data  ## unit tests only
	$(PY) -m pytest -m "not notebook"

lab: setup
	.venv/bin/jupyter lab notebooks/

nmr-model: setup  ## retrain the shipped NMR denoiser models/nmr_unet_cpu.pt (cpu profile, ~12 min on 2 cores)
	$(PY) -m lib.nmr train --profile cpu --out models/nmr_unet_cpu.pt --overwrite
