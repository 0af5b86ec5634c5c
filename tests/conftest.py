"""Shared test fixtures."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NAB_DIR = REPO_ROOT.parent / "shared" / "data" / "nab"


@pytest.fixture
def nab_dir() -> Path:
    """The NAB-format corpus in ../shared/data/nab (skips if it is absent)."""
    if not NAB_DIR.is_dir():
        pytest.skip(f"NAB data not found at {NAB_DIR}")
    return NAB_DIR
