# The two commands of the README. Both create the virtual environment (.venv) on first use.
#   make report   install, run the five stages (profile default) and build the book into _build/html
#   make test     install, lint, run the unit tests, the notebook regression checks (nbval) and the
#                 smoke report with the book built with warnings as errors
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default

.PHONY: install report smoke test lint notebooks clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps tinysoundfont==0.3.7  # see requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

report: install
	$(PY) -m musicscale run --profile $(PROFILE)

smoke: install
	$(PY) -m musicscale run --profile smoke

lint: install
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests notebooks --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --durations=10

# re-execute the committed notebooks in place with their defaults (the smoke run), from a fresh work/smoke:
# their outputs are what nbval compares
notebooks: install
	rm -rf work/smoke
	cd notebooks && for nb in 01_data 02_tokenize 03_train 04_analyze 05_generate; do \
		../$(PY) -m papermill --cwd . $$nb.ipynb $$nb.ipynb || exit 1; done

clean:
	rm -rf _build book/stages work
