"""Shared test fixtures."""
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples in every run (CI included): a failure found once is found
# again. ``pytest --hypothesis-profile=explore`` draws fresh examples to search further.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile("reproducible")

REPO_ROOT = Path(__file__).resolve().parents[1]
NAB_DIR = REPO_ROOT.parent / "shared" / "data" / "nab"


@pytest.fixture
def nab_dir() -> Path:
    """The NAB-format corpus in ../shared/data/nab (skips if it is absent)."""
    if not NAB_DIR.is_dir():
        pytest.skip(f"NAB data not found at {NAB_DIR}")
    return NAB_DIR


@pytest.fixture(autouse=True)
def _seed_global_generators(request):
    """Each test draws from torch's, NumPy's and ``random``'s global generators seeded from its own id.

    So a test's unseeded ``torch.randn`` gives the same numbers whatever ran before it (``-k``, a
    single file, another order) and in every process: the seed is a CRC of the id, not ``hash()``,
    which changes with ``PYTHONHASHSEED``.
    """
    import numpy as np
    import torch

    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _devices() -> list:
    """CPU always; CUDA as a parameter that is skipped (visibly) where no GPU is present."""
    import torch

    no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
    return ["cpu", pytest.param("cuda", marks=no_cuda)]


@pytest.fixture(params=_devices())
def device(request):
    """Each device the suite can check: ``torch.device("cpu")`` and, where present, ``"cuda"``.

    Tests that take this fixture run once per device, so the same suite checks the CUDA path
    wherever a GPU is (``scripts/gpu_check.sh``)."""
    import torch

    return torch.device(request.param)
