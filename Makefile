# Two commands for a new user: `make demo` (whole toy workflow) and `make test`.
# Both create or reuse .venv and install the pinned stack (requirements.txt) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.htt_tmva-installed

.PHONY: demo test lint docs install clean-demo

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check htt_tmva tests benchmarks
	$(BIN)/ruff format --check htt_tmva tests benchmarks
	PYTHONPATH=. $(BIN)/lint-imports --no-cache --no-logo

# The reference in docs/, rendered with --strict (a broken link or anchor, a page missing from
# mkdocs.yml's nav: an error) into site/.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean-demo:
	rm -rf demo
