# The two commands of the README:
#   make demo   set up .venv and run the main job (the whole pipeline on the built-in digits)
#   make test   set up .venv and run the test suite (what .ci/run calls)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

.PHONY: setup demo test
setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgessl demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q
