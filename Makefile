# `make run` sets up and starts the server; `make test` sets up and runs every test;
# `make bench` runs the benchmark (bench/README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench chaos setup lint clean

run: setup
	$(PY) -m flask --app wsgi db upgrade
	$(PY) wsgi.py

test: setup
	scripts/test.sh

bench: setup
	$(PY) -m bench

# The chaos run of the delivery guarantees (bench/chaos/), several minutes;
# e.g. `make chaos CHAOS_ARGS="--sqlite"` or `CHAOS_ARGS="--quick --seed 7"`.
chaos: setup
	$(PY) -m bench.chaos $(CHAOS_ARGS)

setup: $(VENV)/.installed public/node_modules/.installed

lint: setup
	$(PY) -m ruff check .

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

public/node_modules/.installed: public/package.json public/package-lock.json
	cd public && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) public/node_modules instance
