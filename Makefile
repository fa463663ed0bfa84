# make lab   : set up .venv and open the book in JupyterLab
# make test  : set up .venv; lint; execute every chapter once (two at a time) and render the
#              HTML book from those runs; then the unit tests, the checks of that run and a
#              browser check of its pages
# make book  : set up .venv and build the HTML book into _build/html (the same execution and
#              rendering as make test, without the tests)
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The first of python3.12, python3.11, python3 that runs and is 3.11 or 3.12 (else python3,
# which the version check below then explains); override with `make PYTHON=...`.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null && { echo $$p; exit; }; done; echo python3)
JOBS ?= 2
LAB_PORT ?= 8888
# One folder per run under _build/runs: a `make book` while `make test` runs never mixes
# their notebooks, claims or pages.
# evaluated once, when make starts (a `$$$$` in a recipe would differ from line to line)
RUN_ID := $(shell echo "$$(date +%Y%m%d-%H%M%S)-$$$$")
TEST_RUN := _build/runs/test-$(RUN_ID)

.PHONY: lab test book lint unit manifests bench sync clean

$(STAMP): requirements.txt pyproject.toml binder/overrides.json
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 12) else "Python 3.11 or 3.12 is needed, found %d.%d: run make PYTHON=python3.11 (or 3.12)" % v)'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# JupyterLab: Markdown pages open rendered (MyST, via jupyterlab-myst), no news pop-up.
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp binder/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)
	@echo "Environment ready in $(VENV)."

lab: $(STAMP) sync
	@echo "Opening the book in JupyterLab: the URL with its token is printed below."
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/book/intro.md

sync: $(STAMP)
	@$(BIN)/python tools/book.py sync

lint: $(STAMP)
	$(BIN)/ruff check .
	@# the pattern modules the chapters write with %%writefile are code too
	@rm -rf _build/pattern-modules && $(BIN)/python tests/patternmodules.py _build/pattern-modules
	$(BIN)/ruff check --config pyproject.toml _build/pattern-modules

test: lint $(STAMP)
	$(BIN)/python tools/book.py run $(TEST_RUN) --jobs $(JOBS) || true
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope tests --book-run $(TEST_RUN)

unit: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadscope tests

book: $(STAMP)
	$(BIN)/python tools/book.py run _build/runs/book-$(RUN_ID) --jobs $(JOBS) --publish _build/html

manifests: $(STAMP)
	$(BIN)/python -m labsupport.manifests deploy

bench: $(STAMP)
	$(BIN)/python bench/serving_overhead.py

clean:
	rm -rf _build .pytest_cache .ruff_cache .hypothesis
