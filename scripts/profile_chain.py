#!/usr/bin/env python
"""Where the NAB chain's time goes: cProfile of one block through ``SelectiveUpdateNAB.chain`` (issue 14 item 4).

The chain and the data are ``scripts/bench_stream.py --chain``'s (the same
detector, 1000 streams, probationary 600); a first block is streamed untimed so
that the novelty's store has neighbours, then one block of ``--rows`` rows is
profiled::

    python scripts/profile_chain.py --rows 50
    python scripts/profile_chain.py --rows 50 --full-store   # every novelty store full (bench_stream's fill_store)
    python scripts/profile_chain.py --rows 100 --full-store --search-only --streams 300
    python scripts/profile_chain.py --rows 100 --full-store --search-only --streams 300 --per-row

``--search-only``: instead of the profile, the CPU time (best of 5) per point of the window novelty's search
alone (``WindowNovelty._novelty`` of the block, not learning, so the store stays full), e.g. with few streams
(each stream's index stays in cache) against many. ``--per-row``: the per-row kernel
(``WindowNovelty.batched = False``) instead of the batched one.
"""
from __future__ import annotations

import argparse
import cProfile
import time
import importlib.util
import pstats
import sys
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=50, help="rows (points per stream) per block (default 50)")
    parser.add_argument("--probationary", type=int, default=600)
    parser.add_argument("--top", type=int, default=20, help="lines of the profile (default 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-store", action="store_true",
                        help="fill every stream's novelty store after the first block (its steady state)")
    parser.add_argument("--search-only", action="store_true",
                        help="time the novelty's search alone (CPU time per point, best of 5), no profile")
    parser.add_argument("--per-row", action="store_true",
                        help="the per-row search kernel (nearest_windows) instead of the batched one (the default)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("bench_stream", Path(__file__).with_name("bench_stream.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    stream, ids, block = bench.primed_chain(bench.make_detector(32, 0), args.streams, args.rows, 0,
                                            args.probationary, full_store=args.full_store)
    novelty = bench.novelty_of(stream)
    novelty.batched = not args.per_row
    if args.search_only:
        rows, values = novelty._rows(ids), block[:, :, None]
        novelty._novelty(values, rows, False)  # (compiled, caches warm)
        best = np.inf
        for _ in range(5):
            start = time.process_time()
            novelty._novelty(values, rows, False)
            best = min(best, time.process_time() - start)
        print(f"search only: {best / block.size * 1e6:.3f} us of CPU per point ({args.streams} streams, "
              f"{args.rows} rows, full store: {args.full_store}, {'per-row' if args.per_row else 'batched'})")
        return 0
    profile = cProfile.Profile()
    profile.enable()
    stream.process(block, ids)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
