# Quick start: `make demo` runs a broker, a worker and jobs end to end; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PEERS := gearman-job-server gearman-tools openssl nginx prometheus chromium chromium-driver postgresql php-cli php-gearman libgearman-client-perl \
	uwsgi-core uwsgi-plugin-python3

.PHONY: venv peers lint test demo bench clean

$(BIN)/spoolgear: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

venv: $(BIN)/spoolgear

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
	$(BIN)/ruff check broker django_jobs tests bench examples
	$(BIN)/ruff format --check broker django_jobs tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv peers lint
	$(BIN)/pytest -q

demo: venv
	$(BIN)/python examples/demo.py

bench: venv peers
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
