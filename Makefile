# Everything a fresh Debian machine with Python 3.11 needs: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SALT_VENV := .cache/salt-venv
SALT_VERSION := 3008.4
STAMP := $(VENV)/.installed

.PHONY: venv salt-peer test test-fast demo bench lint clean image

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The real Salt peer for interoperability tests, in its own venv (never the project's).
salt-peer: $(SALT_VENV)/.installed

$(SALT_VENV)/.installed:
	test -x $(SALT_VENV)/bin/python || $(PYTHON) -m venv $(SALT_VENV)
	$(SALT_VENV)/bin/pip install -q salt==$(SALT_VERSION)
	touch $@

test: venv salt-peer
	AUTOPI_SALT_VENV=$(abspath $(SALT_VENV)) $(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m 'not salt and not slow'

demo: venv
	$(PY) -m tools.demo

bench: venv salt-peer
	AUTOPI_SALT_VENV=$(abspath $(SALT_VENV)) $(PY) -m bench.run

lint: venv
	$(VENV)/bin/ruff check autopi_proto autopi_common autopi_agent cloud_master hil tests
	$(VENV)/bin/mypy

# The SD-card image (needs pi-gen's requirements: see image/README.md).
image:
	image/build.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
