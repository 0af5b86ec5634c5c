# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use. torch is pinned first to the CPU build so
# pip does not pull a multi-GB CUDA build; on a GPU machine install your
# CUDA torch into .venv first and the pin is skipped.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# One intra-op thread: the tests' and demo's tensors are small, and a second
# thread only contends with torch.compile's workers (override on the command line).
export OMP_NUM_THREADS ?= 1

.PHONY: demo test test-slow bench install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,box2d]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow
