# One target per habit. Every target creates .venv and installs what it needs,
# so each works on a fresh Debian machine with python3 (>= 3.11).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint bench demo docs clean proxy browser vendor

$(STAMP): pyproject.toml
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv (Debian)"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[postgres,test,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) proxy browser
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

# tests/test_dashboard_browser.py drives Debian's chromium (Playwright from the test
# extra, with no browser download of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian) for tests/test_dashboard_browser.py"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq chromium >/dev/null; }

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

# The chart library the dashboard ships (no CDN: a node may run offline), copied
# from the npm package pinned in web/package.json and web/package-lock.json. The
# copy is committed; run this after changing the pin (a test checks they agree).
VENDOR := node/dashboard/static/vendor
vendor:
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq npm; }
	cd web && npm ci --no-audit --no-fund
	cp web/node_modules/echarts/dist/echarts.min.js $(VENDOR)/echarts.min.js
	cp web/node_modules/echarts/LICENSE $(VENDOR)/echarts.LICENSE
	cp web/node_modules/echarts/NOTICE $(VENDOR)/echarts.NOTICE
	cp web/node_modules/echarts/licenses/LICENSE-d3 $(VENDOR)/echarts.LICENSE-d3
	cp web/node_modules/zrender/LICENSE $(VENDOR)/zrender.LICENSE
