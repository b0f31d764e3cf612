# Two commands do the whole set-up on a fresh machine: `make chat` and `make test`.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config.example.toml
BIN := $(VENV)/bin

.PHONY: chat test bench install clean

# What the chat needs, and no more: a newcomer sees a prompt without waiting for Synapse and the test tools.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The test tools on top (pytest, hypothesis, Synapse, ...).
$(BIN)/.test-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.test-installed

# Element's crypto stack (matrix-js-sdk) for the tests' Element client; the stamp lives inside node_modules,
# so removing node_modules installs it again.
ELEMENT := tests/element
$(ELEMENT)/node_modules/.installed: $(ELEMENT)/package.json $(ELEMENT)/package-lock.json
	npm ci --prefix $(ELEMENT) --no-audit --no-fund --loglevel=error >/dev/null
	touch $@

# Microsoft's local Teams client (the M365 Agents Playground) and playwright-core, which drives its page in
# Debian's chromium (installed by .ci/run; playwright-core downloads no browser of its own).
PLAYGROUND := tests/playground
$(PLAYGROUND)/node_modules/.installed: $(PLAYGROUND)/package.json $(PLAYGROUND)/package-lock.json
	npm ci --prefix $(PLAYGROUND) --no-audit --no-fund --loglevel=error >/dev/null
	touch $@

## Start meldbot locally: SQLite in var/, the terminal as chat platform, no accounts.
chat: $(BIN)/.installed
	mkdir -p var   # the example's SQLite folder; `meldbot migrate` makes no folders (a typo would go unseen)
	$(BIN)/meldbot --config $(CONFIG) migrate
	$(BIN)/meldbot --config $(CONFIG) chat

## Run the whole test suite. PostgreSQL tests run when MELDBOT_TEST_POSTGRES_URL is set.
## TEST_WORKERS processes side by side (pytest-xdist), each test file whole in one of them.
TEST_WORKERS ?= 2
# Debian's Chromium for that page (the only system package the tests need): installed when missing,
# with sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the Teams test"; \
	  $(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'; }

test: $(BIN)/.test-installed $(ELEMENT)/node_modules/.installed $(PLAYGROUND)/node_modules/.installed chromium
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

$(BIN)/.bench-installed: $(BIN)/.test-installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

## Run every benchmark (about 20 minutes) and write benchmarks/RESULTS.md. PostgreSQL at
## MELDBOT_BENCH_POSTGRES_URL (default: the local server, database test).
bench: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache tests/element/node_modules tests/playground/node_modules
