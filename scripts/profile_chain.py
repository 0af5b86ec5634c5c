#!/usr/bin/env python
"""Where the NAB chain's time goes: cProfile of one block through ``SelectiveUpdateNAB.chain`` (issue 14 item 4).

The chain and the data are ``scripts/bench_stream.py --chain``'s (the same
detector, 1000 streams, probationary 600); a first block is streamed untimed so
that the novelty's store has neighbours, then one block of ``--rows`` rows is
profiled::

    python scripts/profile_chain.py --rows 50
    python scripts/profile_chain.py --rows 50 --full-store   # every novelty store full (bench_stream's fill_store)
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import sys
from pathlib import Path

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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("bench_stream", Path(__file__).with_name("bench_stream.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    stream = bench.nab_chain(bench.make_detector(32, 0), args.probationary)
    ids = list(range(args.streams))
    block = bench.benchmark_block(args.streams, args.rows, 0)
    stream.process(block, ids)
    if args.full_store:
        bench.fill_store(stream, args.streams, 0)
    profile = cProfile.Profile()
    profile.enable()
    stream.process(block, ids)
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
