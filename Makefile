# One target per habit. Every target creates .venv and installs what it needs,
# so each works on a fresh Debian machine with python3 (>= 3.11).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint bench demo docs clean proxy

$(STAMP): pyproject.toml
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[postgres,test,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) proxy
	$(BIN)/pytest -q -p no:cacheprovider

# tests/test_deploy_proxy.py runs a real nginx and Caddy: Debian's packages, when
# they are missing.
PROXIES := nginx caddy
proxy:
	@missing=""; for p in $(PROXIES); do \
	  command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing (Debian) for tests/test_deploy_proxy.py"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq$$missing >/dev/null; \
	  else \
	    echo "missing$$missing and not root: their tests in tests/test_deploy_proxy.py" \
	      "are skipped (sudo apt-get install$$missing runs them)"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check protocol federation node tests bench
	$(BIN)/mypy

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

demo: $(STAMP)
	$(BIN)/python -m node.demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m node.cli.reference > docs/cli.md
