# cin: `make dev` runs the network on loopback, `make test` runs every test,
# `make bench` measures the POP and the coordinator (docs/benchmarks.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# The real filestack-js (Node) the end-to-end tests drive, as tests/js/package-lock.json pins it.
JS       := tests/js
JS_STAMP := $(JS)/node_modules/.installed
# The PostgreSQL server binaries the tests start a throwaway server from
# (tests/postgres_server.py): Debian's package, installed when they are missing.
PG_STAMP := $(VENV)/.postgresql-server
# The browser the page tests drive (tests/browser.py, through Playwright's Python API,
# never a browser Playwright downloads): Debian's chromium, installed when it is missing.
BROWSER_STAMP := $(VENV)/.chromium

.PHONY: dev test lint typecheck bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

$(PG_STAMP): $(STAMP)
	@if [ -n "$$CIN_POSTGRES_BINDIR" ] || [ "$$CIN_SKIP_POSTGRES" = 1 ] \
	    || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else \
	    echo "The tests need PostgreSQL's server: sudo apt-get install postgresql" \
	         "(or set CIN_POSTGRES_BINDIR, or CIN_SKIP_POSTGRES=1 to skip them)" >&2; \
	    exit 1; \
	fi
	touch $(PG_STAMP)

$(BROWSER_STAMP): $(STAMP)
	@if [ -n "$$CIN_CHROMIUM" ] || [ "$$CIN_SKIP_BROWSER" = 1 ] \
	    || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
	    echo "The page tests need a browser: sudo apt-get install chromium" \
	         "(or set CIN_CHROMIUM to another Chromium, or CIN_SKIP_BROWSER=1 to skip them)" >&2; \
	    exit 1; \
	fi
	touch $(BROWSER_STAMP)

dev: $(STAMP)
	$(BIN)/cin dev -c configs/dev.yaml

test: $(STAMP) $(JS_STAMP) $(PG_STAMP) $(BROWSER_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest -q --durations=25

# Every case at full size, both event loops: about 15 minutes. BENCH_ARGS narrows it,
# e.g. `make bench BENCH_ARGS="large --loop asyncio"`.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) $(JS)/node_modules var .pytest_cache .mypy_cache .ruff_cache
