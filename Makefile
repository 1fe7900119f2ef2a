# Schoolgate: `make run` and `make test` set everything up themselves.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# A Python >= 3.12: python3.13, python3.12, python3, then pyenv's own versions.
FIND_PYTHON = for c in python3.13 python3.12 python3 \
	  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  if $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    command -v $$c || echo $$c; exit 0; fi; done; exit 1

.PHONY: run test test-system lint bench clean
run: $(STAMP)
	$(VENV)/bin/schoolgate run

# Two test processes (pytest-xdist), each taking whole files in order: most tests wait on
# a real gateway, store or browser, so two halve the time on a 2-core machine. Three were
# faster (469 s against 558 s) but starved timing-sensitive tests (a killed worker's
# restart, a reload within 2 s) often enough to fail one run in two: not worth it.
TEST_WORKERS ?= 2
# Bytecode is cached in var/pycache (outside the sources) even where the environment sets
# PYTHONDONTWRITEBYTECODE: each of the hundreds of gateways, CLI commands and web apps the
# tests start is a new Python process, which otherwise compiles the project's 300 modules
# again (0.6 s of CPU for each gateway), and pytest rewrites every test file's asserts again
# in each worker (collection took 14.3 s of CPU, 5.2 s with the cache).
TEST_PYCACHE := $(CURDIR)/var/pycache
test: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(TEST_PYCACHE) \
	  $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Slow tests of the whole system, as root: deploy/install.sh in a clean Debian
# root made by debootstrap (cached in var/system-test/), and others named
# tests/*/test_system_*.py. `make test` skips them.
test-system: $(STAMP)
	SCHOOLGATE_SYSTEM_TESTS=1 $(PY) -m pytest -q -s -p no:cacheprovider $(wildcard tests/*/test_system_*.py)

lint: $(STAMP)
	$(VENV)/bin/ruff check proxy_addons agent tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/list_index_bench.py ../shared/data/ut1

$(PY):
	@py=$$($(FIND_PYTHON)) || { \
	  echo "Schoolgate needs Python 3.12 or newer and found none."; \
	  echo "Install one, e.g. 'apt-get install python3.12 python3.12-venv' (Debian 13 / Ubuntu 24.04)"; \
	  echo "or 'pyenv install 3.12' (Debian 12), then run make again."; exit 1; }; \
	echo "Using $$py ($$($$py --version))"; \
	$$py -m venv $(VENV)

# The install also builds the C part (proxy_addons/core/content/_piece_memo.c) in place.
$(STAMP): $(PY) pyproject.toml setup.py proxy_addons/core/content/_piece_memo.c
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) var/index var/run var/pycache proxy_addons/core/content/*.so build
