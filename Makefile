# rcc-registry: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA_DIR ?= .rcc
PORT ?= 8000
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install run test test-sqlite test-postgres lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: a local federation in ./.rcc/federation (created on first run, reused after): South East on
##      http://127.0.0.1:$(PORT), Greater Manchester, London and the national node on the next ports. Ctrl-C stops all.
run: install
	$(BIN)/rcc-node federation up --dir $(DATA_DIR)/federation --base-port $(PORT)

## test: the whole suite on SQLite, then the storage suite on PostgreSQL
test: install test-sqlite test-postgres

test-sqlite: install
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
