#!/usr/bin/env python
"""Where a learning ``StreamScorer``'s time goes: ``process`` of ``--streams`` streams, ``--points`` points each.

Trains the detector of ``scripts/bench_stream.py`` (hidden 32, event gate), feeds every stream
one point, then profiles ``process`` of the rest with ``torch.profiler`` and prints the share of
each part::

    python scripts/profile_online.py --every 1
    python scripts/profile_online.py --every 32 --path vmap   # the vmap path, for comparison

Parts: the learning steps' layer forward and backward (``per_sample_forward``'s node and its
backward on the fast path), the scoring forward (the step(s) of every point with the stream's
own weights, outside learning), and the rest (head, loss, Adam, window buffers, NumPy).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.profiler import profile, record_function

from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.stream.online import OnlineLearning


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--points", type=int, default=64, help="points per stream (default 64)")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--path", choices=["fast", "vmap"], default="fast")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t = np.arange(2000)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(args.seed).standard_normal(len(t))
    det = SelectiveUpdateDetector(n_steps=100, progress=False, seed=args.seed).fit(x)
    rng = np.random.default_rng(args.seed + 1)
    phase = rng.integers(0, 50, args.streams)[None]
    data = np.sin(2 * np.pi * (np.arange(args.points)[:, None] + phase) / 50)
    data = (data + 0.1 * rng.standard_normal(data.shape))[:, :, None]
    ids = list(range(args.streams))
    scorer = StreamScorer(det, learn=OnlineLearning(every=args.every, window=args.window))
    scorer.process(data[:1], ids)
    learner = scorer.learner
    learner.fast = learner.fast and args.path == "fast"
    learn, gradients = learner._learn, learner._gradients

    def timed_learn(*a, **k):
        with record_function("learning step"):
            return learn(*a, **k)

    def timed_gradients(*a, **k):
        with record_function("gradients"):
            return gradients(*a, **k)

    learner._learn, learner._gradients = timed_learn, timed_gradients
    with profile() as prof:
        start = time.perf_counter()
        with record_function("process"):
            scorer.process(data[1:], ids)
        seconds = time.perf_counter() - start
    totals = {e.key: e.cpu_time_total for e in prof.key_averages()}
    whole = totals["process"]
    step, grads = totals.get("learning step", 0.0), totals.get("gradients", 0.0)
    node = "_PerSampleGRU" if learner.fast else None
    print(f"{args.path} path, {args.streams} streams x {args.points - 1} points, every={args.every}, "
          f"window={args.window}: {args.streams * (args.points - 1) / seconds:,.0f} points/s under the profiler")
    rows = [("learning steps (all)", step), ("  gradients: forward + backward + head + loss", grads),
            ("  Adam and the rest of the step", step - grads)]
    if node:
        rows += [("  of which layer forward (per_sample node)", _node_in(prof, node, "gradients")),
                 ("  of which layer backward", totals.get(node + "Backward", 0.0))]
    rows.append(("outside learning steps (scoring forward, head, buffers)", whole - step))
    for name, value in rows:
        print(f"{name:58s} {value / 1e3:9.1f} ms  {100 * value / whole:5.1f} %")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)


def _node_in(prof, node: str, parent: str) -> float:
    """CPU time of ``node`` events that lie inside a ``parent`` range."""
    events = prof.events()
    ranges = [(e.time_range.start, e.time_range.end) for e in events if e.name == parent]
    return sum(e.cpu_time_total for e in events if e.name == node
               and any(a <= e.time_range.start and e.time_range.end <= b for a, b in ranges))


if __name__ == "__main__":
    main()
