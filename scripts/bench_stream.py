#!/usr/bin/env python
"""Streaming speed of the selective-update detector, against river's HalfSpaceTrees in the same run.

Four measurements (training is not timed)::

    python scripts/bench_stream.py --json runs/bench_stream.json
    python scripts/bench_stream.py --update-rate 0.1 1.0 --memory-points 0   # skipping closed neurons

Every test reports its best of ``--repeats`` rounds, the tests (and the rates)
taking turns round by round.

1. **one stream**:
   ``score_one`` then ``learn_one`` per point, for the stream
   scorer alone (raw surprise), with the anomaly-likelihood wrapper, and for
   river's ``HalfSpaceTrees`` (``score_one`` then ``learn_one`` on
   ``{"x": value}``, values in [0, 1]); ratio = our points/s over river's.
2. **many streams**: ``process`` of blocks of ``--chunk`` points for each of
   ``--streams`` streams (one recurrent step per row for all streams at once),
   for the stream scorer alone and with the likelihood wrapper, and
   ``learn_many`` of one point per stream (``--chunk 1``); points/s, and the
   inference backend core's rule picked.
3. **update rates**: with ``--update-rate r1 r2 ...`` one detector is trained per
   rate (the layer options ``initial_update_rate`` and ``target_update_rate``,
   passed through ``layer_options``: the layer starts at the rate and its
   training holds it there) and tests 1-2 run for each (river's once); the realised
   update rate is the layer's over one benchmark block (fit-time scaling, zero
   state), and each rate's points/s are divided by those of the last rate given
   (e.g. ``--update-rate 0.1 1.0``: rate 0.1 over rate 1.0, same run).
4. **memory**: ``--memory-points`` points (``--streams`` streams) through the
   likelihood wrapper in blocks, for the first rate; resident memory sampled as
   it goes. Flat means the last sample is within a few MiB of the first.
5. **online learning**: with ``--learn [KEY=VALUE ...]`` (settings of
   :class:`~sparsernn.detectors.stream.online.OnlineLearning`, e.g.
   ``--learn every=8 window=32``; bare ``--learn``: its defaults), the stream
   scorer alone with learning off and on, taking turns in the same rounds:
   ``process`` of blocks of ``--chunk`` points for ``--streams`` streams,
   ``--learn-steps`` points per stream, and one stream point by point
   (``--learn-single-points``); ratio = on / off::

       python scripts/bench_stream.py --learn every=1 --memory-points 0 --json runs/bench_learn.json

6. **the NAB chain**: with ``--chain``, ``process`` of blocks of ``--chunk``
   points for ``--streams`` streams, ``--chain-steps`` points per stream,
   through the chain that scores NAB, built by
   :meth:`~sparsernn.detectors.nab.chain.SelectiveUpdateNAB.chain` with its
   defaults (seasonal surprise, likelihood, window novelty, spatial rule;
   probationary ``--chain-probationary`` rows, seasonal period one day of
   5-minute rows), against scorer + likelihood (test 2's, same steps) in the
   same rounds; ratio = chain / (scorer + likelihood). With ``--learn``, also
   the chain with online learning on. Each chain is warmed by one block first
   (the novelty's store then has its first neighbours; each point is compared
   with the embeddings stored so far, about 30 to 90 per stream over the
   timed blocks). ``--chain-full-store`` also times the chain in the
   novelty's steady state: after the warm block every stream's store is
   filled with ``memory`` (8192) embeddings of windows of a longer series
   (each a neighbour of every later row), so every point searches the whole
   store, as after ``span + block * (memory - 1)`` rows of a stream (24,597
   with the defaults). ``--chain-memory-points N``: N points through the chain
   in blocks, resident memory sampled as in test 4. ``--chain-novelty-memory N`` builds every chain of
   test 6 with ``novelty_memory=N`` (default the chain's 8192)::

       python scripts/bench_stream.py --chain --memory-points 0 --json runs/bench_chain.json

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

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer, WindowNovelty
from sparsernn.detectors.stream.online import OnlineLearning
from sparsernn.detectors.normalization import standardize
from sparsernn.detectors.nab.chain import SelectiveUpdateNAB
from sparsernn.detectors.stream.seasonal import rows_per_season


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single-points", type=int, default=5000, help="points for the one-stream test")
    parser.add_argument("--streams", type=int, default=1000, help="streams for the batched tests")
    parser.add_argument("--steps", type=int, default=1000, help="points per stream in the batched test")
    parser.add_argument("--chunk", type=int, default=100, help="points per stream per process() call")
    parser.add_argument("--memory-points", type=int, default=10_000_000, help="points for the memory test (0: skip)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the tests, taking turns; each reports its best round (default 3)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--update-gate", choices=["event", "rhythm"], default="event",
                        help="the detector's update gate (default event, the detector's default)")
    parser.add_argument("--update-rate", type=float, nargs="+", default=None,
                        help="update rate(s) of the layer (initial and target), one detector each (default: the "
                             "detector's defaults); ratios are against the last one")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--learn", nargs="*", metavar="KEY=VALUE", default=None,
                        help="also measure online learning on vs off, with these OnlineLearning settings "
                             "(e.g. every=8 window=32; none: its defaults)")
    parser.add_argument("--learn-steps", type=int, default=64,
                        help="points per stream of the many-stream learning test (default 64)")
    parser.add_argument("--learn-single-points", type=int, default=500,
                        help="points of the one-stream learning test (default 500)")
    parser.add_argument("--chain", action="store_true",
                        help="also measure the chain that scores NAB (SelectiveUpdateNAB.chain) against scorer + "
                             "likelihood, in the same rounds")
    parser.add_argument("--chain-steps", type=int, default=200,
                        help="points per stream of the chain test (default 200)")
    parser.add_argument("--chain-probationary", type=int, default=600,
                        help="probationary rows the chain is built for (default 600, 15%% of a 4000-row NAB file; "
                             "novelty block = round(600 / 208) = 3 rows)")
    parser.add_argument("--chain-novelty-memory", type=int, default=None,
                        help="the chain's novelty_memory (embeddings kept per stream; default: the chain's, 8192)")
    parser.add_argument("--chain-full-store", action="store_true",
                        help="also time the chain with every stream's novelty store full (its steady state)")
    parser.add_argument("--chain-memory-points", type=int, default=0,
                        help="points through the chain for its memory test (0: skip, the default)")
    parser.add_argument("--per-row-search", action="store_true",
                        help="the window novelty's per-row search kernel (WindowNovelty.batched = False) instead of "
                             "the batched one, e.g. to compare the two in one session")
    args = parser.parse_args(argv)
    if args.learn is not None:
        args.learn = learning_settings(parser, args.learn)
    return args


def learning_settings(parser, pairs: list[str]) -> OnlineLearning:
    """``--learn``'s KEY=VALUE pairs as :class:`OnlineLearning` (values parsed as JSON numbers)."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--learn takes KEY=VALUE pairs; got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            parser.error(f"--learn {key}: the value must be a number or null; got {value!r}")
    try:
        return OnlineLearning.coerce(settings)
    except (TypeError, ValueError) as error:
        parser.error(f"--learn: {error}")


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_detector(hidden_size: int, seed: int, update_gate: str = "event",
                  update_rate: float | None = None) -> SelectiveUpdateDetector:
    t = np.arange(2000)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(seed).standard_normal(len(t))
    options = None if update_rate is None else {"initial_update_rate": update_rate, "target_update_rate": update_rate}
    return SelectiveUpdateDetector(hidden_size=hidden_size, update_gate=update_gate, layer_options=options,
                                   n_steps=20, progress=False, seed=seed).fit(x)


def realised_update_rate(detector, n_streams: int, chunk: int, seed: int) -> float:
    """The layer's update rate over one benchmark block (fit-time scaling, from the zero state)."""
    u = standardize(benchmark_block(n_streams, chunk, seed), detector.center_, detector.scale_)
    layer = detector.model_.layer
    with torch.no_grad():
        layer(torch.as_tensor(u, dtype=torch.float32)[..., None])
    return layer.statistics()["update_rate"]


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


def benchmark_block(n_streams: int, chunk: int, seed: int) -> np.ndarray:
    """``(chunk, n_streams)``: one series shifted per stream."""
    return np.tile(series(chunk, seed)[:, None], (1, n_streams)) + np.linspace(0, 1, n_streams)


def many_streams(detector, n_streams: int, steps: int, chunk: int, seed: int,
                 likelihood: bool = True, learn: OnlineLearning | None = None) -> tuple[float, str]:
    """Points/s of ``process`` (``learn_many`` for ``chunk == 1``) over ``n_streams`` streams, and the
    inference backend of the last call (``learn``: with online learning)."""
    scorer = StreamScorer(detector, normalizer_halflife=1000.0, learn=learn)
    stream = AnomalyLikelihood(scorer) if likelihood else scorer
    ids = list(range(n_streams))
    block = benchmark_block(n_streams, chunk, seed)
    stream.process(block, ids)  # allocate the streams
    calls = max(1, steps // chunk)
    start = time.perf_counter()
    for _ in range(calls):
        if chunk == 1:
            stream.learn_many(block[0], ids)
        else:
            stream.process(block, ids)
    return calls * chunk * n_streams / (time.perf_counter() - start), scorer.inference.last_backend


def sampled_memory(stream, n_streams: int, points: int, chunk: int, seed: int) -> dict:
    """``points`` through ``stream.process`` in blocks of ``chunk`` rows of ``n_streams`` streams, resident
    memory sampled eleven times as it goes: ``points``, ``seconds``, ``rss_mib`` ((points, MiB) samples),
    ``growth_mib`` (last sample minus first)."""
    ids = list(range(n_streams))
    block = benchmark_block(n_streams, chunk, seed)
    calls = max(1, points // (chunk * n_streams))
    samples, start = [], time.perf_counter()
    for call in range(calls):
        stream.process(block, ids)
        if call % max(1, calls // 10) == 0 or call == calls - 1:
            samples.append(((call + 1) * chunk * n_streams, rss_mib()))
    return {"points": calls * chunk * n_streams, "seconds": time.perf_counter() - start,
            "rss_mib": samples, "growth_mib": samples[-1][1] - samples[0][1]}


def memory(detector, n_streams: int, points: int, chunk: int, seed: int) -> dict:
    stream = AnomalyLikelihood(StreamScorer(detector, normalizer_halflife=1000.0))
    return sampled_memory(stream, n_streams, points, chunk, seed)


def nab_chain(detector, probationary: int, learn: OnlineLearning | None = None, novelty_memory: int | None = None):
    """The chain that scores NAB around ``detector``, built by ``SelectiveUpdateNAB.chain`` (its defaults;
    ``novelty_memory`` if given), for ``probationary`` rows; the seasonal period from 5-minute timestamps,
    as ``run`` derives it."""
    stamps = np.datetime64("2026-01-01") + np.arange(probationary) * np.timedelta64(5, "m")
    memory = {} if novelty_memory is None else {"novelty_memory": novelty_memory}
    nab = SelectiveUpdateNAB(learn=None if learn is None else learn.settings(), **memory)
    return nab.chain(detector, probationary, period=rows_per_season(stamps))


def novelty_of(stream):
    """The WindowNovelty inside a chain."""
    while not hasattr(stream, "bank"):
        stream = getattr(stream, stream.INNER)
    return stream


def fill_store(stream, n_streams: int, seed: int) -> None:
    """Fill every stream's novelty store (``memory`` embeddings), as after ``span + block * (memory - 1)``
    rows: the embeddings of the windows of a longer benchmark series (stream ``i`` shifted by the same
    offset as in :func:`benchmark_block`), stored every ``block`` rows; each marked as ending at row 0, so
    it is a neighbour of every later row; the novelty's search index is built (untimed), as it would
    have been kept up to date while the store filled. Nothing else of the chain changes."""
    novelty = novelty_of(stream)
    span, block, memory = novelty.span, novelty.block, novelty.memory
    raw = series(span + block * (memory - 1), seed + 1)
    windows = np.lib.stride_tricks.sliding_window_view(raw, span)[::block][:memory]  # (memory, span)
    embeddings = windows.reshape(memory, novelty.window, block).mean(2)  # one channel
    offsets = np.linspace(0, 1, n_streams)
    center, scale = novelty._center[0], novelty._scale[0]
    for row, offset in enumerate(offsets):
        novelty.bank[row] = ((embeddings + offset - center) / scale).astype(np.float32)
    novelty.bank_rows[:n_streams] = 0
    novelty.stored[:n_streams] = memory
    novelty.reindex(build=True)  # the search's index of the store, as kept up to date while it filled


def primed_chain(detector, n_streams: int, chunk: int, seed: int, probationary: int,
                 learn: OnlineLearning | None = None, full_store: bool = False, novelty_memory: int | None = None):
    """``(chain, stream ids, block)``: the NAB chain around ``detector`` after one ``process`` of the
    benchmark block (``(chunk, n_streams)``), which allocates the streams and gives the novelty's store
    its first neighbours; ``full_store``: then every novelty store filled (:func:`fill_store`). The
    set-up shared by :func:`chain_streams`, ``scripts/profile_chain.py`` and ``count_novelty_search.py``."""
    stream = nab_chain(detector, probationary, learn, novelty_memory)
    ids = list(range(n_streams))
    block = benchmark_block(n_streams, chunk, seed)
    stream.process(block, ids)
    if full_store:
        fill_store(stream, n_streams, seed)
    return stream, ids, block


def chain_streams(detector, n_streams: int, steps: int, chunk: int, seed: int, probationary: int,
                  learn: OnlineLearning | None = None, full_store: bool = False,
                  novelty_memory: int | None = None) -> float:
    """Points/s of the NAB chain's ``process`` of blocks of ``chunk`` points over ``n_streams`` streams
    (``full_store``: with every novelty store full, :func:`fill_store`)."""
    stream, ids, block = primed_chain(detector, n_streams, chunk, seed, probationary, learn, full_store,
                                      novelty_memory)
    calls = max(1, steps // chunk)
    start = time.perf_counter()
    for _ in range(calls):
        stream.process(block, ids)
    return calls * chunk * n_streams / (time.perf_counter() - start)


def measure_chain(detector, args) -> dict:
    """Test 6, one round: scorer + likelihood, the chain, and (with ``--learn``) the chain learning, in turn."""
    chunk = min(args.chunk, args.chain_steps)
    baseline, _ = many_streams(detector, args.streams, args.chain_steps, chunk, args.seed)
    memory = args.chain_novelty_memory
    result = {"baseline_points_per_s": baseline,
              "chain_points_per_s": chain_streams(detector, args.streams, args.chain_steps, chunk, args.seed,
                                                  args.chain_probationary, novelty_memory=memory)}
    if args.learn is not None:
        result["chain_learning_points_per_s"] = chain_streams(detector, args.streams, args.chain_steps, chunk,
                                                              args.seed, args.chain_probationary, args.learn,
                                                              novelty_memory=memory)
    if args.chain_full_store:
        result["chain_full_store_points_per_s"] = chain_streams(detector, args.streams, args.chain_steps, chunk,
                                                                args.seed, args.chain_probationary,
                                                                full_store=True, novelty_memory=memory)
    return result


def chain_memory(detector, n_streams: int, points: int, chunk: int, seed: int, probationary: int,
                 novelty_memory: int | None = None) -> dict:
    """Test 6's memory: ``points`` through the chain in blocks, resident memory sampled as in :func:`memory`;
    also the row per stream (and points) at which the novelty's store is full."""
    stream = nab_chain(detector, probationary, novelty_memory=novelty_memory)
    novelty = novelty_of(stream)
    result = sampled_memory(stream, n_streams, points, chunk, seed)
    samples = result["rss_mib"]
    # an embedding is stored once the first window is complete (row span - 1), then every block rows
    full_row = novelty.span + novelty.block * (novelty.memory - 1)
    return {**result, "first_mib": samples[0][1], "last_mib": samples[-1][1], "peak_mib": max(m for _, m in samples),
            "novelty_block": novelty.block,
            "novelty_memory": novelty.memory, "store_full_row": full_row,
            "store_full_points": full_row * n_streams,
            "store_full": bool(novelty.stored[:n_streams].min() >= novelty.memory)}


def measure_rate(detector, values: np.ndarray, args) -> dict:
    """Tests 1-2 (one stream and many streams) for one detector, without river's: one round."""
    alone, backend = many_streams(detector, args.streams, args.steps, args.chunk, args.seed, likelihood=False)
    batched, _ = many_streams(detector, args.streams, args.steps, args.chunk, args.seed)
    stepwise, step_backend = many_streams(detector, args.streams, max(1, args.steps // 10), 1, args.seed)
    return {"one_stream": {"stream_scorer": one_stream(StreamScorer(detector), values.tolist()),
                           "with_likelihood": one_stream(AnomalyLikelihood(StreamScorer(detector)), values.tolist())},
            "many_streams": {"streams": args.streams, "chunk": args.chunk, "scorer_points_per_s": alone,
                             "points_per_s": batched, "per_step_points_per_s": stepwise,
                             "backend": backend, "per_step_backend": step_backend}}


def measure_learning(detector, values: np.ndarray, args) -> dict:
    """Test 5: the scorer alone with online learning off and on (one round; on and off take turns)."""
    chunk, steps = min(args.chunk, args.learn_steps), args.learn_steps
    result = {}
    for name, learn in (("off", None), ("on", args.learn)):
        many, _ = many_streams(detector, args.streams, steps, chunk, args.seed, likelihood=False, learn=learn)
        one = one_stream(StreamScorer(detector, learn=learn), values[:args.learn_single_points].tolist())
        result[name] = {"many_points_per_s": many, "one_points_per_s": one}
    return result


def best_of(rounds: list[dict]) -> dict:
    """The best figure of each test over ``rounds`` of :func:`measure_rate`."""
    best = {part: dict(rounds[0][part]) for part in rounds[0]}
    for result in rounds[1:]:
        for part, figures in result.items():
            for key, value in figures.items():
                if key.endswith("points_per_s") or key in ("stream_scorer", "with_likelihood"):
                    best[part][key] = max(best[part][key], value)
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.per_row_search:
        WindowNovelty.batched = False
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1; got {args.repeats}")
    rates = args.update_rate or [None]
    detectors = [make_detector(args.hidden_size, args.seed, args.update_gate, rate) for rate in rates]
    values = series(args.single_points, args.seed)
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch_threads": args.threads, "torch": torch.__version__},
               "config": vars(args) | {"json": str(args.json),
                                       "learn": None if args.learn is None else args.learn.settings()}}
    # river's one-stream test and each rate's tests take turns, each reporting its best round, so
    # that a slow spell of a shared machine does not fall on one of them only
    hst, rounds, learning, chained = 0.0, [[] for _ in detectors], [], []
    for _ in range(args.repeats):
        hst = max(hst, river_hst(values.tolist(), args.seed))
        for detector, kept in zip(detectors, rounds):
            kept.append(measure_rate(detector, values, args))
        if args.learn is not None:
            learning.append(measure_learning(detectors[0], values, args))
        if args.chain:
            chained.append(measure_chain(detectors[0], args))
    per_rate = [best_of(kept) | {"realised_update_rate": realised_update_rate(detector, args.streams, args.chunk,
                                                                              args.seed)}
                for detector, kept in zip(detectors, rounds)]
    last = per_rate[-1]
    for result in per_rate:
        one, many = result["one_stream"], result["many_streams"]
        one |= {"river_halfspacetrees": hst, "ratio_scorer": one["stream_scorer"] / hst,
                "ratio_with_likelihood": one["with_likelihood"] / hst}
        result["vs_last_rate"] = {key: many[key] / last["many_streams"][key]
                                  for key in ("scorer_points_per_s", "points_per_s", "per_step_points_per_s")}
    results |= {"one_stream": per_rate[0]["one_stream"], "many_streams": per_rate[0]["many_streams"]}
    if args.update_rate:
        results["update_rates"] = {str(rate): result for rate, result in zip(rates, per_rate)}
    if args.memory_points:
        results["memory"] = memory(detectors[0], args.streams, args.memory_points, args.chunk, args.seed)
    if args.learn is not None:
        best = {side: {key: max(r[side][key] for r in learning) for key in learning[0][side]} for side in ("off", "on")}
        results["online_learning"] = {
            "settings": args.learn.settings(), "streams": args.streams, "points_per_stream": args.learn_steps,
            "chunk": min(args.chunk, args.learn_steps), "one_stream_points": args.learn_single_points, **best,
            "ratio_many": best["on"]["many_points_per_s"] / best["off"]["many_points_per_s"],
            "ratio_one": best["on"]["one_points_per_s"] / best["off"]["one_points_per_s"]}
    if args.chain:
        best = {key: max(r[key] for r in chained) for key in chained[0]}
        results["chain"] = {"streams": args.streams, "points_per_stream": args.chain_steps,
                            "chunk": min(args.chunk, args.chain_steps), "probationary": args.chain_probationary,
                            "novelty_memory": args.chain_novelty_memory or SelectiveUpdateNAB().novelty_memory,
                            **best, "ratio": best["chain_points_per_s"] / best["baseline_points_per_s"]}
        if args.learn is not None:
            results["chain"]["learning_settings"] = args.learn.settings()
            results["chain"]["ratio_learning"] = (best["chain_learning_points_per_s"]
                                                  / best["baseline_points_per_s"])
        if args.chain_full_store:
            results["chain"]["ratio_full_store"] = (best["chain_full_store_points_per_s"]
                                                    / best["baseline_points_per_s"])
    if args.chain_memory_points:
        results["chain_memory"] = chain_memory(detectors[0], args.streams, args.chain_memory_points, args.chunk,
                                               args.seed, args.chain_probationary, args.chain_novelty_memory)

    title = (f"streaming benchmark, hidden {args.hidden_size}, {args.update_gate} gate (points/s; ratio vs river "
             f"HalfSpaceTrees or, with several update rates, vs the last rate, in this run)")
    table = Table(title=title)
    for column in ("update rate (realised)", "test", "points/s", "ratio", "backend"):
        table.add_column(column, justify="right" if column in ("points/s", "ratio") else "left")
    table.add_row("", "one stream: river HalfSpaceTrees", f"{hst:,.0f}", "1.00", "")
    for rate, result in zip(rates, per_rate):
        one, many, ratio = result["one_stream"], result["many_streams"], result["vs_last_rate"]
        label = f"{'default' if rate is None else f'{rate:g}'} ({result['realised_update_rate']:.2f})"
        table.add_row(label, "one stream: StreamScorer", f"{one['stream_scorer']:,.0f}",
                      f"{one['ratio_scorer']:.2f}", "numba")
        table.add_row(label, "one stream: + AnomalyLikelihood", f"{one['with_likelihood']:,.0f}",
                      f"{one['ratio_with_likelihood']:.2f}", "numba")
        for key, name, backend in (("scorer_points_per_s", f"blocks of {args.chunk}: StreamScorer", many["backend"]),
                                   ("points_per_s", f"blocks of {args.chunk}: + AnomalyLikelihood", many["backend"]),
                                   ("per_step_points_per_s", "one step per call: + AnomalyLikelihood",
                                    many["per_step_backend"])):
            table.add_row(label, f"{args.streams} streams, {name}", f"{many[key]:,.0f}",
                          f"{ratio[key]:.2f}" if len(rates) > 1 else "-", backend)
    if args.memory_points:
        mem = results["memory"]
        table.add_row("", f"memory: {mem['points']:,} points in {mem['seconds']:.0f} s",
                      f"RSS {mem['rss_mib'][0][1]:.0f} -> {mem['rss_mib'][-1][1]:.0f} MiB",
                      f"{mem['growth_mib']:+.1f} MiB", "")
    if args.learn is not None:
        learned = results["online_learning"]
        settings = ", ".join(f"{k}={v}" for k, v in learned["settings"].items())
        for key, name in (("many_points_per_s", f"{args.streams} streams, blocks of {learned['chunk']}: StreamScorer"),
                          ("one_points_per_s", "one stream: StreamScorer")):
            table.add_row("learning off", name, f"{learned['off'][key]:,.0f}", "1.00", "")
            table.add_row("learning on", name, f"{learned['on'][key]:,.0f}",
                          f"{learned['on'][key] / learned['off'][key]:.3f}", settings)
    if args.chain:
        chain = results["chain"]
        name = f"{args.streams} streams, blocks of {chain['chunk']}"
        table.add_row("", f"{name}: StreamScorer + AnomalyLikelihood", f"{chain['baseline_points_per_s']:,.0f}",
                      "1.00", "")
        table.add_row("", f"{name}: NAB chain", f"{chain['chain_points_per_s']:,.0f}", f"{chain['ratio']:.3f}", "")
        if args.learn is not None:
            table.add_row("learning on", f"{name}: NAB chain", f"{chain['chain_learning_points_per_s']:,.0f}",
                          f"{chain['ratio_learning']:.3f}", "")
        if args.chain_full_store:
            table.add_row("store full", f"{name}: NAB chain", f"{chain['chain_full_store_points_per_s']:,.0f}",
                          f"{chain['ratio_full_store']:.3f}", "")
    if args.chain_memory_points:
        mem = results["chain_memory"]
        table.add_row("", f"NAB chain memory: {mem['points']:,} points in {mem['seconds']:.0f} s "
                          f"(store full at {mem['store_full_points']:,})",
                      f"RSS {mem['first_mib']:.0f} -> {mem['last_mib']:.0f} MiB (peak {mem['peak_mib']:.0f})",
                      f"{mem['growth_mib']:+.1f} MiB", "")
    Console(width=160).print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
