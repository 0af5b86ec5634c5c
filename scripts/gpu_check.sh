#!/usr/bin/env bash
# The GPU check: on a CUDA machine, run the suite's CUDA-parametrised tests and the three speed
# benchmarks at small sizes, writing each one's log and JSON to OUT_DIR; 8 minutes at most
# (each step has its own time limit; on this project's 2-core CPU the whole script takes about 4.5).
#
#   here:  bash scripts/gpu_wheels.sh                       # once: wheels/ for the GPU machine
#   there: bash scripts/gpu_check.sh [OUT_DIR]              # default: $OUT, else out/gpu_check
#
# On the device machine of this workplace: run(command="bash scripts/gpu_check.sh", carry=["wheels"]).
# The machine's own python3 (CUDA torch) is used; the wheels go to a temporary --target folder and
# the repository is imported as `sparsernn` through a temporary link, so nothing is installed for
# good. Every step runs even if one fails; the exit code is 1 if any failed. The tests that run are
# those whose id names the device (the `device` fixture's "cuda" parameter, and the CUDA-only
# tests): `pytest -k cuda`. To try the script itself without a GPU:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_WHEELS= PYTHON=.venv/bin/python bash scripts/gpu_check.sh /tmp/gpu_check
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-out/gpu_check}}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PY=${PYTHON:-python3}
SCALE=${GPU_CHECK_TIME_SCALE:-1}  # multiplies every step's time limit (they add up to 8 minutes)
WHEELS=${GPU_CHECK_WHEELS-wheels}  # empty: install nothing (PY already has the packages)
mkdir -p "$OUT_DIR"

if [ "$DEVICE" = cuda ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $PY's torch sees no CUDA device (set GPU_CHECK_DEVICE=cpu to try the script on a CPU)" >&2
  exit 2
fi
site=$(mktemp -d)
if [ -n "$WHEELS" ] && compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$WHEELS"/*.whl || {
    echo "gpu_check: installing $WHEELS/ failed" >&2; exit 3; }
elif [ -n "$WHEELS" ]; then
  echo "gpu_check: no $WHEELS/*.whl (run scripts/gpu_wheels.sh here first); using what $PY has" >&2
fi
link=$(mktemp -d)
ln -s "$PWD" "$link/sparsernn"
export PYTHONPATH="$link:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$PY" -c "import torch, sparsernn.core, sparsernn.agents, sparsernn.detectors; \
print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" \
  | tee "$OUT_DIR/environment.log"

failed=()
step() {  # step NAME SECONDS COMMAND...: run it under its time limit, log to OUT_DIR/NAME.log
  local name=$1 limit=$(($2 * SCALE)) start=$SECONDS rc
  shift 2
  echo "== $name (limit $limit s): $*"
  timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  rc=$?
  tail -n 25 "$OUT_DIR/$name.log"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
}

step tests 210 "$PY" -m pytest -q -p no:cacheprovider -k "$DEVICE" tests
step bench_core 150 "$PY" scripts/bench_core.py --device "$DEVICE" --T 32 --B 64 --I 64 --hidden 256 \
  --fractions 1 0.1 --update-rates 0.5 0.1 --repeats 5 --json "$OUT_DIR/bench_core.json"
step bench_rl 75 "$PY" scripts/bench_rl.py --device "$DEVICE" --steps 2048 --repeats 1 --warmup 512 \
  --variants stock-lstm ppo-mlp gru lstm --json "$OUT_DIR/bench_rl.json"
step bench_stream 45 "$PY" scripts/bench_stream.py --single-points 2000 --streams 1000 --steps 50 \
  --memory-points 0 --json "$OUT_DIR/bench_stream.json"

if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: failed: ${failed[*]} (logs in $OUT_DIR)"
  exit 1
fi
echo "gpu_check: all steps passed (logs and JSON in $OUT_DIR)"
