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
	$(VENV)/bin/edgessl pretrain --data digits --method simclr --epochs 2 --out runs/demo
	$(VENV)/bin/edgessl evaluate --run runs/demo --data digits --normal-label 0 --json

test: $(STAMP)
	$(PY) -m pytest -q
