#!/usr/bin/env python
"""Streaming speed of the selective-update detector, against river's HalfSpaceTrees in the same run.

Three measurements (training is not timed)::

    python scripts/bench_stream.py --json runs/bench_stream.json

1. **one stream** (best of ``--repeats`` rounds, the three tests taking turns):
   ``score_one`` then ``learn_one`` per point, for the stream
   scorer alone (raw surprise), with the anomaly-likelihood wrapper, and for
   river's ``HalfSpaceTrees`` (``score_one`` then ``learn_one`` on
   ``{"x": value}``, values in [0, 1]); ratio = our points/s over river's.
2. **many streams**: ``process`` of blocks of ``--chunk`` points for each of
   ``--streams`` streams (one recurrent step per row for all streams at once),
   and ``learn_many`` of one point per stream (``--chunk 1``); points/s.
3. **memory**: ``--memory-points`` points (``--streams`` streams) through the
   likelihood wrapper in blocks; resident memory sampled as it goes. Flat
   means the last sample is within a few MiB of the first.

The scorers are built before their timing starts, so the numba compilation
(or cache loading) of the one-stream step, done when a scorer is built, is not
timed.

Torch uses one thread here (``torch.set_num_threads``), the fastest setting for
these small steps on a shared CPU; ``--threads`` changes it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single-points", type=int, default=5000, help="points for the one-stream test")
    parser.add_argument("--streams", type=int, default=1000, help="streams for the batched tests")
    parser.add_argument("--steps", type=int, default=1000, help="points per stream in the batched test")
    parser.add_argument("--chunk", type=int, default=100, help="points per stream per process() call")
    parser.add_argument("--memory-points", type=int, default=10_000_000, help="points for the memory test (0: skip)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the one-stream tests, taking turns; each reports its best round (default 3)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_detector(hidden_size: int, seed: int) -> SelectiveUpdateDetector:
    t = np.arange(2000)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(seed).standard_normal(len(t))
    return SelectiveUpdateDetector(hidden_size=hidden_size, n_steps=20, progress=False, seed=seed).fit(x)


def series(n: int, seed: int) -> np.ndarray:
    t = np.arange(n)
    return (0.5 + 0.4 * np.sin(2 * np.pi * t / 50) + 0.05 * np.random.default_rng(seed).standard_normal(n))


def one_stream(stream, values: np.ndarray) -> float:
    start = time.perf_counter()
    for v in values:
        stream.score_one(v)
        stream.learn_one(v)
    return len(values) / (time.perf_counter() - start)


def river_hst(values: np.ndarray, seed: int) -> float:
    from river import anomaly

    model = anomaly.HalfSpaceTrees(seed=seed)
    start = time.perf_counter()
    for v in values:
        x = {"x": v}
        model.score_one(x)
        model.learn_one(x)
    return len(values) / (time.perf_counter() - start)


def many_streams(detector, n_streams: int, steps: int, chunk: int, seed: int) -> float:
    stream = AnomalyLikelihood(StreamScorer(detector, normalizer_halflife=1000.0))
    ids = list(range(n_streams))
    block = np.tile(series(chunk, seed)[:, None], (1, n_streams)) + np.linspace(0, 1, n_streams)
    stream.process(block, ids)  # allocate the streams
    calls = max(1, steps // chunk)
    start = time.perf_counter()
    for _ in range(calls):
        if chunk == 1:
            stream.learn_many(block[0], ids)
        else:
            stream.process(block, ids)
    return calls * chunk * n_streams / (time.perf_counter() - start)


def memory(detector, n_streams: int, points: int, chunk: int, seed: int) -> dict:
    stream = AnomalyLikelihood(StreamScorer(detector, normalizer_halflife=1000.0))
    ids = list(range(n_streams))
    block = np.tile(series(chunk, seed)[:, None], (1, n_streams)) + np.linspace(0, 1, n_streams)
    calls = max(1, points // (chunk * n_streams))
    samples, start = [], time.perf_counter()
    for call in range(calls):
        stream.process(block, ids)
        if call % max(1, calls // 10) == 0 or call == calls - 1:
            samples.append(((call + 1) * chunk * n_streams, rss_mib()))
    return {"points": calls * chunk * n_streams, "seconds": time.perf_counter() - start,
            "rss_mib": samples, "growth_mib": samples[-1][1] - samples[0][1]}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    detector = make_detector(args.hidden_size, args.seed)
    values = series(args.single_points, args.seed)
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch_threads": args.threads, "torch": torch.__version__},
               "config": vars(args) | {"json": str(args.json)}}
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1; got {args.repeats}")
    # The three one-stream tests take turns, and each reports its best round, so that a slow
    # spell of a shared machine does not fall on one of them only.
    rounds = [(river_hst(values.tolist(), args.seed), one_stream(StreamScorer(detector), values.tolist()),
               one_stream(AnomalyLikelihood(StreamScorer(detector)), values.tolist()))
              for _ in range(args.repeats)]
    hst, scorer, likelihood = (max(column) for column in zip(*rounds))
    results["one_stream"] = {"river_halfspacetrees": hst, "stream_scorer": scorer, "with_likelihood": likelihood,
                             "ratio_scorer": scorer / hst, "ratio_with_likelihood": likelihood / hst}
    batched = many_streams(detector, args.streams, args.steps, args.chunk, args.seed)
    stepwise = many_streams(detector, args.streams, max(1, args.steps // 10), 1, args.seed)
    results["many_streams"] = {"streams": args.streams, "chunk": args.chunk, "points_per_s": batched,
                               "per_step_points_per_s": stepwise}
    if args.memory_points:
        results["memory"] = memory(detector, args.streams, args.memory_points, args.chunk, args.seed)

    table = Table(title="streaming benchmark (points/s; ratio vs river HalfSpaceTrees in this run)")
    for column in ("test", "points/s", "ratio"):
        table.add_column(column, justify="right" if column != "test" else "left")
    one = results["one_stream"]
    table.add_row("one stream: river HalfSpaceTrees", f"{hst:,.0f}", "1.00")
    table.add_row("one stream: StreamScorer", f"{scorer:,.0f}", f"{one['ratio_scorer']:.2f}")
    table.add_row("one stream: + AnomalyLikelihood", f"{likelihood:,.0f}", f"{one['ratio_with_likelihood']:.2f}")
    table.add_row(f"{args.streams} streams, blocks of {args.chunk}", f"{batched:,.0f}", "-")
    table.add_row(f"{args.streams} streams, one step per call", f"{stepwise:,.0f}", "-")
    if args.memory_points:
        mem = results["memory"]
        table.add_row(f"memory: {mem['points']:,} points in {mem['seconds']:.0f} s",
                      f"RSS {mem['rss_mib'][0][1]:.0f} -> {mem['rss_mib'][-1][1]:.0f} MiB",
                      f"{mem['growth_mib']:+.1f} MiB")
    Console().print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
