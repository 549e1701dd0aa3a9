# Two commands matter: `make demo` and `make test`. Both create/refresh the virtualenv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench env tools clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# promtool (Prometheus's own checker) validates deploy/prometheus in tests/test_deploy. It comes
# with Debian's `prometheus` package; installed only when missing (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

demo: $(STAMP)
	$(BIN)/fulfil demo $(ARGS)

test: $(STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/routing_bench.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
