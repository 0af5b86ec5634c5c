"""Where a routed layer's time goes: the profile behind ``docs/benchmarks.md``'s "Routed sparsity that pays".

Times ``SparseRecurrent(I, H, router_keep=(k_in, k))`` on its ``auto`` backend at several hidden
keeps, forward (no grad) and forward+backward, beside the same layer dense. What does not fall
with the keep is fixed per-row work (router, top-k, cell, stored step values); what falls is the
kept channels' products. ``--cprofile`` adds the top functions of one forward+backward by
``cProfile`` (the C++ loops appear as one entry each: ``routed_forward``, ``routed_backward``,
``routed_weight_grads``); for inside the C++ loops use ``perf record`` on this script.

Example::

    python scripts/profile_routed.py --hidden 256 --keeps 1 0.1 0.01
    python scripts/profile_routed.py --T 32 --B 8 --I 2 --hidden 64 --keeps 1 0.5 0.1 --cprofile   # RL's shapes
"""
from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

from sparsernn.benchmarking import time_call
from sparsernn.core import SparseRecurrent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--I", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--keeps", type=float, nargs="+", default=[1.0, 0.25, 0.1, 0.01])
    parser.add_argument("--input-keep", type=float, default=None, help="default: the hidden keep (both sides)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.randn(args.T, args.B, args.I)
    print(f"T={args.T} B={args.B} I={args.I} H={args.hidden}, one thread; medians of {args.repeats}")
    for keep in args.keeps:
        options = {} if keep >= 1.0 else {"router_keep": (args.input_keep or keep, keep)}
        layer = SparseRecurrent(args.I, args.hidden, cell="gru", seed=0, **options)

        def forward():
            with torch.no_grad():
                layer(x)

        def forward_backward():
            layer.zero_grad(set_to_none=True)
            y, _ = layer(x)
            y.sum().backward()

        fwd = time_call(forward, args.repeats)
        fb = time_call(forward_backward, args.repeats)
        label = "dense" if keep >= 1.0 else f"keep {options['router_keep']}"
        print(f"{label:<22} forward {fwd:9.2f} ms   forward+backward {fb:9.2f} ms   ({layer.last_backend})")
        if args.cprofile and keep < 1.0:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.repeats):
                forward_backward()
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
