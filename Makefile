# Two commands on a fresh machine:   make demo   (set up + run the study on built-in demo data)
#                                    make test   (set up if needed + lint + tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dfmm-installed
PARAMS ?= params/compact.yaml params/sources/local.yaml

.PHONY: setup demo test test-fast lint compact full lab clean-runs browser withhold readme-results bench

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

# Two pytest-xdist workers (one per core); the tests that start kernels stay in one of them (tests/conftest.py).
test: lint
	$(BIN)/python -m pytest -n 2

# The edit loop: everything but the tests marked slow (whole studies, retrainings, real data); CI runs them all.
test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow" -q

compact: setup
	$(BIN)/dfmm study $(PARAMS)

full: setup
	$(BIN)/dfmm study params/full.yaml params/sources/local.yaml

lab: setup
	$(BIN)/jupyter lab notebooks/

# Headless Chromium for tests/test_browser.py (skipped, saying so, without it): apt-get when missing and root.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
	  || echo "make browser: could not install chromium; tests/test_browser.py will be skipped"; \
	else echo "make browser: no chromium, and installing it needs root and apt-get; tests/test_browser.py will be skipped"; fi

# Before committing a report: remove the pages (and figures) that show dataset items; index.html lists them as
# withheld with the command that regenerates them (dfmm.study.report.withhold).
REPORT ?= reports/compact
WITHHOLD ?= 01_data_exploration 03_text_training 05_gradcam_analysis
WITHHOLD_FIGURES ?= 01_faces_* 05_gradcam_gallery
withhold: setup
	$(BIN)/python -c 'import sys; from dfmm.study.report import withhold; \
	[print("removed", p) for p in withhold(sys.argv[1], sys.argv[2].split(), sys.argv[3].split())]' \
	"$(REPORT)" "$(WITHHOLD)" "$(WITHHOLD_FIGURES)"

# The README's results block, from the committed compact report (tests/test_readme_results.py keeps them equal).
readme-results: setup
	$(BIN)/python -c 'from dfmm.study.report import update_readme; update_readme("README.md", "reports/compact")'

# Every benchmark script, one table + benchmarks/results/<machine>-<date>/bench.json; missing inputs are skipped.
# Full sizes take tens of minutes on a CPU: make bench BENCH_ARGS="--size small" for a smoke run.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean-runs:
	rm -rf runs/
