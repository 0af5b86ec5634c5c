"""Where a gated layer's forward+backward time goes: torch's profiler over a few calls of one
``SparseRecurrent`` (the selective loops on a CPU), by operator.

The profile behind ``docs/benchmarks_selective.md`` ("the layer")::

    OMP_NUM_THREADS=1 python scripts/profile_selective.py --gate rhythm --rate 0.1
    # the same calls under perf, for the C++ loops' hot lines:
    OMP_NUM_THREADS=1 perf record -o perf.data python scripts/profile_selective.py --gate rhythm --rate 0.1 --no-table
    perf annotate -i perf.data --stdio \
        -s "sparsernn::(anonymous namespace)::selective_backward_impl<float, sparsernn::selective::GruCell>"
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from sparsernn.core import SparseRecurrent


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gate", choices=["rhythm", "event"], default="rhythm")
    parser.add_argument("--cell", choices=["gru", "lstm", "elman"], default="gru")
    parser.add_argument("--rate", type=float, default=0.1, help="initial_update_rate")
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--I", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--calls", type=int, default=3, help="profiled forward+backward calls (after one warm-up)")
    parser.add_argument("--no-table", action="store_true", help="only run the calls (for perf record)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    layer = SparseRecurrent(args.I, args.hidden, cell=args.cell, update_gate=args.gate, initial_update_rate=args.rate,
                            seed=0)
    x = torch.randn(args.T, args.B, args.I, generator=torch.Generator().manual_seed(0))

    def call() -> None:
        layer.zero_grad(set_to_none=True)
        y, _ = layer(x)
        y.sum().backward()

    call()
    if args.no_table:
        for _ in range(args.calls):
            call()
        return ""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.calls):
            call()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    print(f"backend {layer.last_backend}; update rate {layer.statistics()['update_rate']:.3f}, "
          f"computed {layer.statistics()['computed_fraction']:.3f}")
    print(table)
    return table


if __name__ == "__main__":
    main()
