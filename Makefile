# provlens: two commands for a fresh machine with Python 3.11+.
#   make demo   set up, build the demo tenant and open the dashboard on it
#   make test   set up (incl. Debian chromium for the browser tests) and run the full test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup lint bench browser clean

$(STAMP): pyproject.toml requirements.lock
	@echo "provlens setup 1/4: creating the virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "provlens setup 2/4: upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "provlens setup 3/4: installing the pinned dependencies (requirements.lock; a few minutes the first time)"
	$(BIN)/python -m pip install --progress-bar on -r requirements.lock
	@echo "provlens setup 4/4: installing provlens itself"
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)
	@echo "provlens setup done."

setup: $(STAMP)

demo: setup
	@echo "provlens demo: generating a demo tenant and ingesting it (about a minute)..."
	$(BIN)/provlens demo

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test: setup browser
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
