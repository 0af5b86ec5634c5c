# The two commands of the README: `make demo` and `make test`; `make bench` runs the three speed
# benchmarks at small sizes (a few minutes on a CPU) and writes their JSON to $(BENCH_DIR).
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
BENCH_DIR ?= runs/bench
BENCH_DEVICE ?= cpu

.PHONY: demo test test-slow bench install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,box2d,sweep]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

# The sizes of scripts/gpu_check.sh's benchmark steps (which run them on a GPU under time limits).
bench: $(VENV)/.installed
	$(PY) scripts/bench_core.py --device $(BENCH_DEVICE) --T 32 --B 64 --I 64 --hidden 256 \
	  --fractions 1 0.1 --repeats 5 --json $(BENCH_DIR)/bench_core.json
	$(PY) scripts/bench_rl.py --device $(BENCH_DEVICE) --steps 2048 --repeats 1 --warmup 512 \
	  --variants stock-lstm ppo-mlp gru lstm --json $(BENCH_DIR)/bench_rl.json
	$(PY) scripts/bench_stream.py --single-points 2000 --streams 1000 --steps 50 \
	  --memory-points 0 --json $(BENCH_DIR)/bench_stream.json
