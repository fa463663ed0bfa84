# make lab   : set up .venv and open the book in JupyterLab
# make test  : set up .venv, then lint, unit tests, every notebook, and a -W book build
# make book  : set up .venv and build the HTML book, executing every notebook
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The first of python3.12, python3.11, python3 that runs and is 3.11 or 3.12 (else python3,
# which the version check below then explains); override with `make PYTHON=...`.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null && { echo $$p; exit; }; done; echo python3)
PYTEST_WORKERS ?= 2
LAB_PORT ?= 8888

.PHONY: lab test book lint unit notebooks bench clean

$(STAMP): requirements.txt pyproject.toml binder/overrides.json
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 12) else "Python 3.11 or 3.12 is needed, found %d.%d: run make PYTHON=python3.11 (or 3.12)" % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# JupyterLab: open Markdown pages (the book's intro) rendered, not as source.
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp binder/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)
	@echo "Environment ready in $(VENV)."

lab: $(STAMP)
	@echo "Opening the book in JupyterLab: the URL with its token is printed below."
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/book/intro.md

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --nbval-lax --nbval-current-env tests notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -k "not book"

notebooks: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --nbval-lax --nbval-current-env notebooks

book: $(STAMP)
	@# one run id for the whole build: the summary pages then show this build's numbers only
	MLSDP_LAB_RUN=book-$$(date +%s) $(BIN)/jupyter-book build . --builder html
	@echo "Open _build/html/index.html"

bench: $(STAMP)
	$(BIN)/python bench/serving_overhead.py

clean:
	rm -rf _build .pytest_cache .ruff_cache
