# Every target builds the virtualenv first when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORYBOARDS := $(wildcard storyboards/*.yaml)

.PHONY: all check fmt test render compile validate golden bench clean

all: check test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/ruff format --check compiler tests bench
	$(BIN)/ruff check compiler tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format compiler tests bench
	$(BIN)/ruff check --fix compiler tests bench

test: check
	$(BIN)/pytest

validate: $(STAMP)
	$(BIN)/storyboard validate $(STORYBOARDS)

compile: $(STAMP)
	$(BIN)/storyboard compile $(STORYBOARDS)

# Renders through the built-in emulator unless KLING_* credentials are set; paid work
# then still needs --yes or a budget (pass ARGS="--yes"). The render refreshes each
# contact sheet itself.
render: $(STAMP)
	$(BIN)/storyboard render $(STORYBOARDS) $(ARGS)

golden: $(STAMP)
	$(BIN)/python -m tests.golden

bench: $(STAMP)
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/incremental.py
	$(BIN)/python bench/assemble.py
	$(BIN)/python bench/untrusted.py
	$(BIN)/python bench/fuzz.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/mix.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
