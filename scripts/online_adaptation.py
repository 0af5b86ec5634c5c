#!/usr/bin/env python
"""Does a stream that learns online adapt to a new regime, and forget the old one? (issue 14, item 1)

A synthetic series changes regime A -> B -> A: A is a sine of period 24, B a square wave of
period 10 and twice the amplitude (both with Gaussian noise of 0.1). A detector is fitted on a
first stretch of A only (``--fit`` points), then one stream runs through A (``--a`` points),
B (``--b``) and A again (``--a``), with online learning on and off, for each update gate
(``event``: the selective-update GRU; ``none``: a plain GRU) and seed. Reported per segment,
over the stream's points:

- ``nll``: mean Gaussian negative log-likelihood (less its constant) of the normalised point
  under the forecast, ``surprise + 0.5 * mean log var`` — the forecaster's loss;
- ``surprise``: the mean score, ``0.5 (u - mu)^2 / var`` (a calibrated forecaster averages
  0.5; learning that shrinks an over-wide variance *raises* it, so the NLL is the measure of
  fit and the surprise the measure of what a detector would see);
- ``se``: mean squared error of the forecast mean (normalised units).

Segments: ``A_before`` (the last ``--tail`` points of the first A), ``B_start`` (the first
``--head`` points of B, before adaptation), ``B_end`` (the last ``--tail`` points of B, after
adaptation), ``A_return`` (the first ``--head`` points of the returning A). Adaptation is
``B_start - B_end``; forgetting is ``A_return - A_before`` (with learning off it measures only
the state's transient at the switch). The learning settings are fixed before any run (not
chosen on these numbers)::

    python scripts/online_adaptation.py --seeds 0 1 2 --json docs/results/issue14/online_adaptation.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.stream.online import OnlineLearning

SEGMENTS = ("A_before", "B_start", "B_end", "A_return")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--gates", nargs="+", default=["event", "none"], choices=["event", "rhythm", "none"])
    parser.add_argument("--fit", type=int, default=600, help="points of A the detector is fitted on")
    parser.add_argument("--a", type=int, default=600, help="points of each A segment of the stream")
    parser.add_argument("--b", type=int, default=1200, help="points of the B segment")
    parser.add_argument("--head", type=int, default=100, help="points of B_start and A_return")
    parser.add_argument("--tail", type=int, default=200, help="points of A_before and B_end")
    parser.add_argument("--n-steps", type=int, default=60, help="the detector's training steps")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def regimes(args, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fit stretch (A) and the stream A -> B -> A, noise drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    n = args.fit + 2 * args.a + args.b
    t = np.arange(n)
    a = np.sin(2 * np.pi * t / 24)
    b = 2.0 * np.sign(np.sin(2 * np.pi * t / 10 + 0.3))
    start_b, end_b = args.fit + args.a, args.fit + args.a + args.b
    x = np.where((t >= start_b) & (t < end_b), b, a) + 0.1 * rng.standard_normal(n)
    return x[:args.fit], x[args.fit:]


def stream(detector, x: np.ndarray, learn: OnlineLearning | None) -> dict[str, np.ndarray]:
    """Per point of ``x``: surprise, NLL and squared error under the forecast made before it."""
    scorer = StreamScorer(detector, learn=learn)
    scorer.process(x[:1, None])  # registers the stream; its first point has no forecast to judge
    surprise, nll, se = [], [], []
    for value in x[1:]:
        mean, var = float(scorer.forecast_mean[0, 0]), float(scorer.forecast_var[0, 0])
        u = float(np.clip((value - detector.center_[0]) / detector.scale_[0], -100, 100))
        score = float(scorer.process(np.array([[value]]))[0, 0])
        surprise.append(score)
        nll.append(0.5 * (u - mean) ** 2 / var + 0.5 * np.log(var))
        se.append((u - mean) ** 2)
    return {"surprise": np.array(surprise), "nll": np.array(nll), "se": np.array(se)}


def segments(args, values: np.ndarray) -> dict[str, float]:
    """Mean of ``values`` (one per stream point from the second) over each segment."""
    a, b, head, tail = args.a, args.b, args.head, args.tail
    at = {"A_before": (a - tail, a), "B_start": (a, a + head), "B_end": (a + b - tail, a + b),
          "A_return": (a + b, a + b + head)}
    return {name: float(values[lo - 1:hi - 1].mean()) for name, (lo, hi) in at.items()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # pragma: no cover
        return "unknown"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    learn = OnlineLearning(learning_rate=args.learning_rate, window=args.window, every=args.every)
    runs = []
    for gate in args.gates:
        for seed in args.seeds:
            fit, x = regimes(args, seed)
            started = time.perf_counter()
            detector = SelectiveUpdateDetector(update_gate=None if gate == "none" else gate, n_steps=args.n_steps,
                                               progress=False, seed=seed).fit(fit)
            for mode, setting in (("frozen", None), ("online", learn)):
                measured = stream(detector, x, setting)
                runs.append({"gate": gate, "seed": seed, "learning": mode,
                             **{metric: segments(args, values) for metric, values in measured.items()}})
            print(f"gate {gate} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    summary = {}
    for gate in args.gates:
        for mode in ("frozen", "online"):
            chosen = [r for r in runs if r["gate"] == gate and r["learning"] == mode]
            entry = {}
            for metric in ("nll", "surprise", "se"):
                entry[metric] = {s: float(np.mean([r[metric][s] for r in chosen])) for s in SEGMENTS}
                per_seed = {
                    "adaptation": [r[metric]["B_start"] - r[metric]["B_end"] for r in chosen],
                    "forgetting": [r[metric]["A_return"] - r[metric]["A_before"] for r in chosen]}
                entry[metric] |= {k: float(np.mean(v)) for k, v in per_seed.items()}
                entry[metric] |= {f"{k}_per_seed": [float(x) for x in v] for k, v in per_seed.items()}
            summary[f"{gate}/{mode}"] = entry
    table = Table(title="regime A -> B -> A: mean NLL (surprise) per segment, mean over seeds "
                        f"{args.seeds}; online: {learn}")
    for column in ("gate", "learning", *SEGMENTS, "adaptation (B_start - B_end)", "forgetting (A_return - A_before)"):
        table.add_column(column, justify="left" if column in ("gate", "learning") else "right")
    for key, entry in summary.items():
        gate, mode = key.split("/")
        nll, sur = entry["nll"], entry["surprise"]
        table.add_row(gate, mode, *(f"{nll[s]:.2f} ({sur[s]:.2f})" for s in SEGMENTS),
                      f"{nll['adaptation']:+.2f}", f"{nll['forgetting']:+.2f}")
    Console(width=200).print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python scripts/online_adaptation.py " + " ".join(argv or sys.argv[1:]),
                  "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": commit(),
                  "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": args.threads},
                  "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "learning": learn.settings(), "summary": summary, "runs": runs}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
