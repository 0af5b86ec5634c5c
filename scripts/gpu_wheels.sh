#!/usr/bin/env bash
# Downloads, here (where the package registry is reachable), the wheels that scripts/gpu_check.sh
# installs on the GPU machine, into wheels/ (ignored by git; carried with the run).
#
# The GPU machine has CUDA torch, numpy, scipy, pandas, scikit-learn, numba, matplotlib, pytest and
# hypothesis, for Python 3.12, but no gymnasium, SB3, sb3-contrib, pyod or river and no registry.
# The versions are this project's .venv's (so the GPU run tests what CI tests); every dependency
# of these wheels that is not listed is already on that machine (checked with each wheel's
# Requires-Dist when the list was made).
#
#   bash scripts/gpu_wheels.sh            # then: run scripts/gpu_check.sh there, carrying wheels/
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${GPU_PYTHON_VERSION:-3.12}
PACKAGES=(gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2 sb3-contrib==2.9.2
          pyod==3.6.7 river==0.26.1)
mkdir -p wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d wheels "${PACKAGES[@]}"
ls -l wheels
du -sh wheels
