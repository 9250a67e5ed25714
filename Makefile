# Two commands on a fresh machine:   make demo   (set up + run the study on built-in demo data)
#                                    make test   (set up if needed + lint + tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dfmm-installed
PARAMS ?= params/compact.yaml params/sources/local.yaml

.PHONY: setup demo test lint compact full lab clean-runs

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name dfmm --display-name "Python (dfmm)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/dfmm study params/demo.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

compact: setup
	$(BIN)/dfmm study $(PARAMS)

full: setup
	$(BIN)/dfmm study params/full.yaml params/sources/local.yaml

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-runs:
	rm -rf runs/
