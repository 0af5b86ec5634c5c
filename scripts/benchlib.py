"""Helpers shared by the ``bench_*.py`` scripts: timing and machine description.

(Scripts import this by path; nothing in the package imports ``scripts/``.)
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` (>= 1) calls after ``warmup``."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def machine_info() -> dict:
    """Date, CPU model, core count, Python and torch versions, CUDA device if any."""
    import os

    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_json(path: str | None, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (if given)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")
