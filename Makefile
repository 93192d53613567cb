PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= data/synthetic_mars
ACTION_DATA ?= data/synthetic_ucf101

.PHONY: venv demo demo-action test bench bench-gpu clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/python tools/demo.py --data $(DEMO_DATA) --out outputs/demo

demo-action: venv
	$(BIN)/python tools/demo_action.py --data $(ACTION_DATA) --out outputs/demo_action

test: venv
	$(BIN)/python -m pytest tests

bench: venv
	for b in reid-eval attention temporal loader train-step; do $(BIN)/python tools/benchmark.py $$b || exit 1; done

# One-shot GPU check (tools/gpu_check.py): no venv needed, e.g. `make bench-gpu PYTHON=python3`;
# outputs under $(GPU_CHECK_OUT) ($OUT when the environment sets it).
PYTHON ?= $(BIN)/python
GPU_CHECK_OUT ?= $(if $(OUT),$(OUT),outputs/gpu_check)
bench-gpu:
	$(PYTHON) tools/gpu_check.py --out $(GPU_CHECK_OUT)

clean:
	rm -rf outputs build *.egg-info
