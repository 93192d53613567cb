PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synthetic_mars

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/python tools/demo.py --data $(DEMO_DATA) --out outputs/demo

test: venv
	$(BIN)/python -m pytest tests

bench: venv
	$(BIN)/python tools/benchmark.py all

clean:
	rm -rf outputs build *.egg-info
