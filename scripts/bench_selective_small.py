"""Where small gated layers should skip closed neurons: the selective C++ loops against the fused loops
that compute every candidate, at RL's shapes, per cell, gate and update rate (the measurement behind
``core/fused_selective.py``'s ``SELECTIVE_SMALL_MAX_RATE``).

For each cell, gate and rate, one ``SparseRecurrent`` (``initial_update_rate`` = the rate, ``fused``
backend) runs forward+backward of one ``(T, B, I)`` call twice per round: with the selective loops
(the cell's ``SELECTIVE_SMALL_MAX_RATE`` set to 1) and without them (set to 0: the fused loops that
compute every candidate, then apply the switch). The two take turns ``--rounds`` times; each figure is the median over
rounds of the median over ``--repeats`` calls of the thread's CPU time in microseconds (a shared machine's
other processes are not counted), and the ratio is ``time(every candidate) / time(selective)``: above 1,
skipping pays.

``--dense-above v ...`` times the selective loops once per value of the cell's ``SELECTIVE_DENSE_ABOVE``
(a step whose open share is above it runs as dense GEMMs; for layers with ``batch * hidden >=
SELECTIVE_MIN_DENSE_WIDTH``) and prints ``time(first) / time(each)`` (above 1: that threshold is
faster); ``--no-every`` leaves out the loops that compute every candidate.

Example::

    OMP_NUM_THREADS=1 python scripts/bench_selective_small.py --cells lstm elman --rates 0.1 0.2 0.3 0.4 0.5
    OMP_NUM_THREADS=1 python scripts/bench_selective_small.py --cells elman --B 64 --I 64 --hidden 1024 \
        --rates 0.2 0.3 0.5 --dense-above 0.5 0.3 0.2 0.1 --repeats 3 --rounds 2 --no-every
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import sparsernn.core.fused_selective as fused_selective
from sparsernn.benchmarking import machine_info, time_call, write_json
from sparsernn.core import SparseRecurrent


def forward_backward(layer: SparseRecurrent, x: torch.Tensor):
    """One call's forward+backward (the sum of the outputs as the loss)."""
    def run():
        layer.zero_grad(set_to_none=True)
        y, _ = layer(x)
        y.sum().backward()

    return run


def ratios(medians: list[float], n_selective: int) -> str:
    """``time(first) / time(sel@v)`` for the other thresholds (above 1: v is faster), then
    ``time(every candidate) / time(first)`` (above 1: skipping pays)."""
    parts = [f"{medians[0] / m:.2f}x" for m in medians[1:n_selective]]
    parts += [f"every/sel {m / medians[0]:.2f}x" for m in medians[n_selective:]]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--I", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm", "elman"], choices=["gru", "lstm", "elman"])
    parser.add_argument("--gates", nargs="+", default=["event", "rhythm"], choices=["event", "rhythm"])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dense-above", type=float, nargs="+", default=[None],
                        help="values of SELECTIVE_DENSE_ABOVE to time the selective loops at (default: its own)")
    parser.add_argument("--no-every", action="store_true", help="leave out the loops that compute every candidate")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.randn(args.T, args.B, args.I, generator=torch.Generator().manual_seed(0))
    print(f"T={args.T} B={args.B} I={args.I} H={args.hidden}; forward+backward, us of thread CPU time")
    thresholds = args.dense_above  # None: the cell's own
    modes = [("selective", v) for v in thresholds] + ([] if args.no_every else [("every", None)])
    names = ["sel" if v is None else f"sel@{v:g}" for v in thresholds] + ([] if args.no_every else ["every cand."])
    print(f"{'cell':<6} {'gate':<7} {'rate':>5} {'realised':>9} " + " ".join(f"{n:>11}" for n in names)
          + "   ratios")
    rows = []
    original = fused_selective.SELECTIVE_SMALL_MAX_RATE
    original_dense = fused_selective.SELECTIVE_DENSE_ABOVE
    try:
        for cell in args.cells:
            for gate in args.gates:
                for rate in args.rates:
                    layer = SparseRecurrent(args.I, args.hidden, cell=cell, update_gate=gate, initial_update_rate=rate,
                                            backend="fused", seed=0)
                    run = forward_backward(layer, x)
                    times: list[list[float]] = [[] for _ in modes]
                    for _ in range(args.rounds):
                        for i, (mode, dense) in enumerate(modes):
                            fused_selective.SELECTIVE_SMALL_MAX_RATE = {**original, cell: 1.0 if mode == "selective"
                                                                        else 0.0}
                            fused_selective.SELECTIVE_DENSE_ABOVE = original_dense if dense is None else {
                                **original_dense, cell: dense}
                            times[i].append(time_call(run, args.repeats, 2, clock=time.thread_time) * 1e3)
                    realised = layer.statistics()["update_rate"]
                    medians = [statistics.median(t) for t in times]
                    row = {"cell": cell, "gate": gate, "rate": rate, "realised": realised,
                           "selective_us": {"own" if v is None else f"{v:g}": m for v, m in zip(thresholds, medians)}}
                    if not args.no_every:
                        row["every_candidate_us"] = medians[-1]
                        row["ratio"] = medians[-1] / medians[0]
                    rows.append(row)
                    print(f"{cell:<6} {gate:<7} {rate:>5g} {realised:>9.3f} " + " ".join(f"{m:>11.0f}" for m in medians)
                          + "   " + ratios(medians, len(thresholds)), flush=True)
    finally:
        fused_selective.SELECTIVE_SMALL_MAX_RATE = original
        fused_selective.SELECTIVE_DENSE_ABOVE = original_dense
    payload = {"benchmark": "bench_selective_small",
               "command": " ".join(["python", "scripts/bench_selective_small.py", *(argv or sys.argv[1:])]),
               "machine": machine_info(), "shape": {"T": args.T, "B": args.B, "I": args.I, "H": args.hidden},
               "rows": rows}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
