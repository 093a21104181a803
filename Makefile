# The two commands the README starts with. Both create .venv when missing and install the project.
# torch comes first, pinned to the local CPU build, so that no dependency pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
export ROBUSTLAB_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint setup clean-venv

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed

## make demo: set up, then the main job: the zoo's clean accuracy, then the default robustness study + report.
demo: setup
	$(BIN)/robustlab zoo eval --n 1000
	$(BIN)/robustlab run

## make test: set up, lint (ruff check, ruff format --check, mypy strict), then the default test suite (slow, reproduction, reference and distributed tests excluded; .ci/run adds all but slow).
test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

clean-venv:
	rm -rf $(VENV)
