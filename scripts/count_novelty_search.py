#!/usr/bin/env python
"""How much of the store the window novelty's search looks at: per row, the entries whose group bound it
computes and the full distances it computes, against the slots a plain scan compares (issue 14 item 4).

The chain, data and full store are ``scripts/bench_stream.py --chain --chain-full-store``'s (a first block
streamed, every stream's store filled with 8192 embeddings); then one block of ``--rows`` rows of
``--streams`` streams goes through the search with numba disabled (plain Python, so that its helpers can be
counted; slow: keep ``--streams`` small)::

    python scripts/count_novelty_search.py --streams 3 --rows 100
    python scripts/count_novelty_search.py --streams 3 --rows 100 --batched

``--batched``: the batched kernel (``batched_search.py``) instead of the per-row one; ``columns`` then counts
the column walks (a row's own column and each other one its key gap does not rule out), and ``call_pairs``
the (row, store of the call) distances its vectorised pass computes (the per-row kernel bounds these
through the index's unsorted entries instead).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ["NUMBA_DISABLE_JIT"] = "1"  # before numba is imported: the kernels run as Python


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--probationary", type=int, default=600)
    parser.add_argument("--batched", action="store_true", help="count the batched kernel (default: per-row)")
    args = parser.parse_args(argv)
    from sparsernn.detectors.stream import batched_search, nearest

    spec = importlib.util.spec_from_file_location("bench_stream", Path(__file__).with_name("bench_stream.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    stream, ids, block = bench.primed_chain(bench.make_detector(32, 0), args.streams, args.rows, 0,
                                            args.probationary, full_store=True)
    novelty = bench.novelty_of(stream)
    memory = novelty.memory
    novelty.batched = args.batched
    counts = {"rows": 0, "bounds_sorted": 0, "bounds_unsorted": 0, "distances": 0, "columns": 0, "chunks": 0}
    search, bound_pass, distance = nearest._search, nearest._bound_pass, nearest._distance
    first_at_least, chunk = nearest._first_at_least, nearest._chunk

    def counted_search(*a):
        counts["rows"] += 1
        return search(*a)

    def counted_bounds(stats, r, lo, hi, *a):
        counts["bounds_sorted" if lo < memory else "bounds_unsorted"] += hi - lo
        return bound_pass(stats, r, lo, hi, *a)

    def counted_distance(*a):
        counts["distances"] += 1
        return distance(*a)

    nearest._search, nearest._bound_pass = counted_search, counted_bounds
    def counted_columns(*a):
        counts["columns"] += 1
        return first_at_least(*a)

    def counted_chunks(*a):
        counts["chunks"] += 1
        return chunk(*a)

    nearest._distance = counted_distance
    nearest._first_at_least, nearest._chunk = counted_columns, counted_chunks
    if args.batched:
        counts["call_pairs"] = 0
        batched_stream = batched_search._batched_stream

        def counted_batched(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, *a):
            # the (row, call store) pairs: store k (row t_k) against rows t_k + exclude .. T - 1 (memory >> T)
            T, span, s0 = scaled.shape[0], window * block, seen[r]
            stores = [t for t in range(T) if learn and s0 + t + 1 >= span and (s0 + t + 1) % block == 0]
            counts["call_pairs"] += sum(max(0, T - (t + exclude)) for t in stores)
            counts["rows"] += sum(1 for t in range(T) if s0 + t + 1 >= span)
            return batched_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn,
                                  *a)

        batched_search._batched_stream = counted_batched
        batched_search._bound_pass, batched_search._distance = counted_bounds, counted_distance
        batched_search._first_at_least, batched_search._chunk = counted_columns, counted_chunks
        batched_search._prefetch_lines = lambda *a: None  # (a hint to the CPU: nothing to count in Python)
    stream.process(block, ids)
    per_row = {name: value / counts["rows"] for name, value in counts.items() if name != "rows"}
    print(json.dumps({"streams": args.streams, "rows": args.rows, "searches": counts["rows"],
                      "kernel": "batched" if args.batched else "per-row",
                      "slots_per_row_scan": memory, "per_row": per_row}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
