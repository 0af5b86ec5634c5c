#!/usr/bin/env python
"""Measure the shapes behind ``core.choose_backend``'s CPU bounds: forward + backward of one
call with a few episode resets, per backend, at RL-like shapes; prints one JSON row per
(shape, variant) with each backend's median milliseconds and ``reference / fused``.

    OMP_NUM_THREADS=1 python scripts/bench_auto_rule.py --shapes 32,64,64 32,256,64 128,128,64 \
        --variants gru lstm gru-d0.1 gru-event lstm-rhythm gru-keep0.5 elman --repeats 3

A shape is ``T,B,H`` (input width 4). The numbers in ``choose_backend``'s docstring came from
this measurement (2026-12-01, 2-core shared VM, one thread).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch

from sparsernn.core import SparseRecurrent

VARIANTS = {
    "gru": dict(cell="gru"),
    "lstm": dict(cell="lstm"),
    "elman": dict(cell="elman"),
    "gru-d0.1": dict(cell="gru", density_ih=0.1, density_hh=0.1),
    "gru-event": dict(cell="gru", update_gate="event"),
    "lstm-rhythm": dict(cell="lstm", update_gate="rhythm"),
    "gru-keep0.5": dict(cell="gru", router_keep=0.5),
}


def shape(text: str) -> tuple[int, int, int]:
    try:
        T, B, H = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is T,B,H (three whole numbers); got {text!r}") from None
    if min(T, B, H) < 1:
        raise argparse.ArgumentTypeError(f"T, B and H must be >= 1; got {text!r}")
    return T, B, H


def time_call(layer: SparseRecurrent, x: torch.Tensor, starts: torch.Tensor, repeats: int) -> float:
    """Median milliseconds of forward + backward over ``repeats`` calls after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        y, state = layer(x, None, starts)
        (y.sum() + state.sum()).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", type=shape, default=[(32, 64, 64), (32, 256, 64), (32, 512, 64)])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["gru", "lstm"])
    parser.add_argument("--backends", nargs="+", choices=["fused", "reference", "compiled"],
                        default=["fused", "reference"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    for (T, B, H), name in itertools.product(args.shapes, args.variants):
        x = torch.randn(T, B, 4, generator=gen, requires_grad=True)
        starts = (torch.rand(T, B, generator=gen) < 0.02).float()
        row = {"T": T, "B": B, "H": H, "variant": name}
        for backend in args.backends:
            layer = SparseRecurrent(4, H, backend=backend, seed=0, **VARIANTS[name])
            row[backend] = round(time_call(layer, x, starts, args.repeats), 2)
        if "fused" in row and "reference" in row:
            row["reference/fused"] = round(row["reference"] / row["fused"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
