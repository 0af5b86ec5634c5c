"""Helpers of the benchmark scripts (``scripts/bench_*.py``): timing, machine description, JSON output,
and the turn-taking rounds in which ``bench_rl.py`` trains its models.

Imported as ``sparsernn.benchmarking``; nothing in the library imports it.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``fn()`` in milliseconds over ``repeats`` (>= 1) calls after ``warmup``, by
    ``clock``: wall time by default; ``time.thread_time`` counts only the calling thread's CPU time
    (on a shared machine, wall time also counts other processes' turns)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
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


def timed_steps(model: Any, steps: int) -> tuple[int, float]:
    """Train an SB3 ``model`` ``steps`` more env steps (whole rollouts: possibly a few more).

    Returns
    -------
    (int, float)
        Env steps done and seconds taken.
    """
    before, start = model.num_timesteps, time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return model.num_timesteps - before, time.perf_counter() - start


def interleaved_round(models: dict[str, Any], steps: int, chunk: int) -> dict[str, float]:
    """One round: every SB3 model trains ``steps`` env steps, taking turns of ``chunk`` steps.

    Taking turns makes a slow or fast spell of a shared machine fall on all models alike.

    Returns
    -------
    dict
        Env steps per second of each model, by name.
    """
    done = {name: 0 for name in models}
    seconds = {name: 0.0 for name in models}
    while any(done[name] < steps for name in models):
        for name, model in models.items():
            if done[name] < steps:
                n, t = timed_steps(model, min(chunk, steps - done[name]))
                done[name] += n
                seconds[name] += t
    return {name: done[name] / seconds[name] for name in models}
