# rcc-registry: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= .rcc
PORT ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install ui-deps run test test-sqlite test-postgres lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## ui-deps: what the browser tests of the web pages need (tests/ui): Debian's chromium, driven by Playwright
##          (the pip package, never `playwright install`), and axe-core from npm into the venv (git-ignored).
##          Idempotent. Outside CI a missing chromium is only reported: those tests then skip, saying why.
AXE_VERSION := 4.14.1
AXE := $(VENV)/node_modules/axe-core/axe.min.js

ui-deps: install $(AXE)
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$CI" = "true" ]; then \
		echo "installing chromium (Debian package) for the browser tests"; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else \
		echo "note: /usr/bin/chromium is missing, so tests/ui's browser tests will skip (apt-get install -y chromium)"; \
	fi

$(AXE):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(VENV) --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION); \
	elif [ "$$CI" = "true" ]; then \
		echo "npm is needed to install axe-core for the browser tests (apt-get install -y npm)" >&2; exit 1; \
	else \
		echo "note: npm is missing, so tests/ui's browser tests will skip (they need axe-core from npm)"; \
	fi

## run: a local federation in ./.rcc/federation (created on first run, reused after): South East on
##      http://127.0.0.1:$(PORT), Greater Manchester, London and the national node on the next ports. Ctrl-C stops all.
run: install
	$(BIN)/rcc-node federation up --dir $(DATA_DIR)/federation --base-port $(PORT)

## test: the whole suite on SQLite, then the storage suite on PostgreSQL
test: install test-sqlite test-postgres

test-sqlite: install ui-deps
	$(BIN)/pytest -q -p no:cacheprovider

test-postgres: install
	@if [ -n "$$RCC_TEST_SKIP_POSTGRES" ] && [ "$$CI" != "true" ]; then \
		echo "RCC_TEST_SKIP_POSTGRES set: PostgreSQL suite skipped"; \
	else \
		RCC_TEST_ENGINE=postgres $(BIN)/pytest -q -p no:cacheprovider -m postgres; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .rcc .pytest_cache .mypy_cache .ruff_cache
