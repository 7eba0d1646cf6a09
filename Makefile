# Quick start: `make demo` runs a broker, a worker and jobs end to end; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PEERS := gearman-job-server gearman-tools openssl nginx prometheus chromium chromium-driver postgresql php-cli php-gearman libgearman-client-perl \
	uwsgi-core uwsgi-plugin-python3 systemd

.PHONY: venv peers lint docs test demo bench clean

# The editable install skips compiling (SPOOLGEAR_PURE_PYTHON): the rule below compiles the
# core in place, and again whenever one of its sources changes.
$(BIN)/spoolgear: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools
	SPOOLGEAR_PURE_PYTHON=1 $(BIN)/pip install --quiet -e '.[test,bench,docs]'
	touch $@

# The core and the protocol codecs compiled by mypyc (setup.py); without a C compiler the
# step says so and the pure-Python modules run. --force: the compiled code lives in one
# shared library that setuptools would not relink when only a module's source changed.
$(VENV)/compiled-core: $(BIN)/spoolgear setup.py $(wildcard broker/core/*.py broker/protocol/*.py)
	$(BIN)/python setup.py --quiet build_ext --inplace --force
	touch $@

venv: $(VENV)/compiled-core

# Test peers (gearmand, gearman-tools, PHP and Perl clients, uWSGI) from Debian, installed when
# missing and we are root; without them the peer tests skip (but fail under CI=true).
peers:
	@missing=$$(for p in $(DEBIAN_PEERS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing test peers: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "test peers missing (their tests will skip): $$missing"; fi; \
	fi

lint: venv
	$(BIN)/ruff check broker django_jobs tests bench examples docs setup.py
	$(BIN)/ruff format --check broker django_jobs tests bench examples docs setup.py
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site, every warning (a broken link or anchor) an error.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The whole suite on the compiled core (tests/packaging builds the sdist and wheels and
# tests them installed in clean venvs), then the tests of the compiled modules themselves
# (codecs and dispatch) once more on their pure-Python twins.
test: venv peers lint docs
	$(BIN)/pytest -q
	SPOOLGEAR_PURE_PYTHON=1 $(BIN)/pytest -q tests/unit

demo: venv
	$(BIN)/python examples/demo.py

# The bench also needs Redis for the Django peers (bench/django_peers.py); their Python
# packages go into venvs of their own under .venv/peers, made by the bench itself.
bench: venv peers
	$(MAKE) --no-print-directory peers DEBIAN_PEERS=redis-server
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build site dist
	find broker -name '*.so' -delete
