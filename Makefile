# lare2: the two commands of a fresh clone are `make reproduce` and `make test`.
#
# Both create (or reuse) a virtual environment in $(VENV) and install the project into it with
# `pip install -e .[dev]` only when pyproject.toml changed since the last install: the install
# leaves a stamp file named after pyproject.toml's sha256 inside the venv, so a second call goes
# straight to the work.

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= mini
PYTEST_ARGS ?=

VENV_BIN := $(VENV)/bin
PYPROJECT_SHA := $(shell (sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml) | cut -c1-16)
INSTALL_STAMP := $(VENV)/.lare2-installed-$(PYPROJECT_SHA)
NOTEBOOK_SOURCES := $(wildcard notebooks/[0-9][0-9]_*.ipynb notebooks/[0-9][0-9]_*.py)

# Offline by construction (the hub is read once, at import); quiet progress bars in batch runs.
RUN_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	TQDM_MININTERVAL=$${TQDM_MININTERVAL:-5}

.DEFAULT_GOAL := help
.PHONY: help install reproduce test test-fast lab sync clean-venv

help:  ## list the targets
	@echo "lare2 make targets (variables: PYTHON=$(PYTHON) VENV=$(VENV) PROFILE=$(PROFILE)):"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

install: $(INSTALL_STAMP)  ## create or reuse the venv and install -e .[dev] if pyproject.toml changed

$(INSTALL_STAMP):
	@if [ ! -x "$(VENV_BIN)/python" ]; then \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
			echo "error: lare2 needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." \
			     "Run e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'." >&2; exit 1; }; \
		echo "creating $(VENV) with $$($(PYTHON) --version)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	@$(VENV_BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: $(VENV) has Python < 3.11; run 'make clean-venv' and retry with PYTHON=python3.11" >&2; \
		exit 1; }
	$(VENV_BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.lare2-installed-*
	@touch $@

reproduce: $(INSTALL_STAMP)  ## run every notebook in order on PROFILE (default mini) → figures/
	$(RUN_ENV) $(VENV_BIN)/lare2 run --profile $(PROFILE)

test: $(INSTALL_STAMP)  ## run the whole test suite, notebook smoke runs included
	$(RUN_ENV) $(VENV_BIN)/python -m pytest -x -q -ra $(PYTEST_ARGS)

test-fast: $(INSTALL_STAMP)  ## unit tests only: no notebook runs, nothing marked slow (a few minutes)
	$(RUN_ENV) $(VENV_BIN)/python -m pytest -x -q -ra -m "not slow and not notebooks" $(PYTEST_ARGS)

lab: $(INSTALL_STAMP)  ## open JupyterLab on notebooks/
	$(VENV_BIN)/jupyter lab notebooks/

sync: $(INSTALL_STAMP)  ## pair/update notebooks/*.ipynb and their .py:percent twins (jupytext)
	$(if $(NOTEBOOK_SOURCES),$(VENV_BIN)/jupytext --sync $(NOTEBOOK_SOURCES),@echo "no notebooks to sync")

clean-venv:  ## delete the venv (the next command reinstalls)
	rm -rf $(VENV)
