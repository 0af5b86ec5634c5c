"""The batched novelty search (detectors/stream/batched_search.py: each stream's rows of a call searched
together) against the per-row kernel (nearest.py) and the NumPy reference: bit-equal novelties, the same
ring / bank / stored and the same index after every call, where the batched order could go wrong: the
call's own stores (seen by later rows of the call only, from ``exclude`` rows after them, until a later
store of the call overwrites them), banks that wrap within a call, ``exclude`` past the history, streams
of different ages and non-contiguous rows in one call, near-ties, exact ties, the clip, NaN, and full
stores of many columns (issue 14 item 4)."""
import numpy as np
import pytest

from sparsernn.detectors import AnomalyLikelihood, StreamScorer, WindowNovelty
from sparsernn.detectors.stream.search_index import NAMES, PENDING
from .test_novelty_pruning import hard_series
from .test_novelty_search import LIKELIHOOD, SEARCH_STATE, LoggedNovelty, feed, series_set

INDEX = [name for name in NAMES if name != "last"]  # ("last": the previous row's nearest, a starting hint)


def triplets(fitted, scan_limit=0, **settings):
    """Three equal fresh novelty chains: the batched search, the per-row kernel, the NumPy reference (the
    compiled two through the index from the first store, ``scan_limit=0``, unless told)."""
    out = []
    for batched, reference in ((True, False), (False, False), (False, True)):
        stream = LoggedNovelty(AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD), **settings, **LIKELIHOOD)
        stream.batched, stream.reference, stream.log, stream.scan_limit = batched, reference, [], scan_limit
        out.append(stream)
    return out


def assert_all_same(batched, per_row, plain):
    """Novelties bit-equal to the per-row kernel's (NaN where NaN) and to the reference's to 1e-12 (NumPy's
    mean of the squared differences may round the last bit differently); the same state across the three;
    the two indexes equal."""
    assert len(batched.log) == len(per_row.log) == len(plain.log)
    for got, row_by_row, expected in zip(batched.log, per_row.log, plain.log):
        np.testing.assert_array_equal(got, row_by_row)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for name in SEARCH_STATE:
        np.testing.assert_array_equal(getattr(batched, name), getattr(plain, name), err_msg=name)
        np.testing.assert_array_equal(getattr(per_row, name), getattr(plain, name), err_msg=name)
    for name in INDEX:
        np.testing.assert_array_equal(getattr(batched._index, name), getattr(per_row._index, name), err_msg=name)


CASES = [
    dict(block=2, window=3, memory=7),               # the bank wraps within a call (memory < stores per call)
    dict(block=1, window=5, memory=16, exclude=1),   # every window stored; a store is a neighbour of the next row
    dict(block=1, window=4, memory=5, exclude=2),    # stores overwritten by the call's own stores, 2 rows on
    dict(block=2, window=2, memory=30, exclude=400),  # exclude longer than the history: never a neighbour
    dict(block=3, window=4, memory=50),              # the NAB chain's shape, smaller
    dict(block=4, window=2, memory=3, exclude=3),    # exclude shorter than the window
]


@pytest.mark.parametrize("settings", CASES)
def test_random_series_of_different_ages_in_calls_of_every_size(fitted, settings):
    streams = triplets(fitted, **settings)
    x = series_set(300, seed=11)  # random walk, noisy sine, constant, huge values (the clip), noise
    names = ["walk", "sine", "flat", "huge", "noise"]
    for stream in streams:
        stream._rows(["other"])  # takes row 0: the streams below are not at rows 0..B-1
        feed(stream, x[:45, :2], names[:2], [1, 7, 30])                      # two streams start early
        feed(stream, x[:70, [3, 0]], [names[3], names[0]], [13, 40])         # different ages in one call
        stream.score_many(x[70, [4, 1, 0]], [names[4], names[1], names[0]])  # learn=False, a new id included
        feed(stream, x[45:, [1, 2, 4]], [names[1], names[2], names[4]], [200, 1, 2, 19])
        feed(stream, x[70:, [0, 3]], [names[0], names[3]], [5, 120, 3])
        stream.process(x[:40, [4, 2, 0]], [names[4], names[2], names[0]])    # rows out of order
    assert_all_same(*streams)
    novelties = np.concatenate([log.ravel() for log in streams[0].log])
    if settings.get("exclude", 0) < 100:
        assert (novelties > 0).sum() > 100 and (novelties == 0).sum() > 20  # distances, and exact ties


@pytest.mark.parametrize("settings", [
    dict(block=1, window=8, memory=300, exclude=3),  # every window stored: merges of the unsorted tail
    dict(block=2, window=4, memory=900),            # several columns, rebuilt as they widen
    dict(block=3, window=3, memory=25),             # F = 3: groups of 1; wraps many times
])
def test_full_stores_near_ties_exact_ties_and_the_clip(fitted, settings):
    """The hard series (a noisy sine: near-ties; an exact cycle: ties; a sine at the clip with differences
    1e-5 of its magnitude; a random walk; jumps between the clips) and pure noise, through full stores,
    in calls of 1 to 500 rows (the columns are searched by many rows at once)."""
    streams = triplets(fitted, **settings)
    x = hard_series(fitted, 2400, seed=12)
    rng = np.random.default_rng(13)
    x = np.concatenate([x, float(fitted.center_[0]) + float(fitted.scale_[0]) * rng.standard_normal((2400, 1))], 1)
    names = ["sine", "cycle", "clip", "walk", "jumps", "noise"]
    for stream in streams:
        feed(stream, x[:, :4], names[:4], [500, 1, 100, 7, 64])
        feed(stream, x[:1900, [5, 4]], [names[5], names[4]], [300, 100])  # other ages, rows out of order
    assert_all_same(*streams)
    assert (streams[0].stored > settings["memory"]).all() and (streams[0].stored > PENDING).any()
    assert streams[0]._index.ncol.max() >= (4 if settings["memory"] >= 900 else 1)
    novelties = np.concatenate([log.ravel() for log in streams[0].log])
    assert (novelties > 0).sum() > 1000 and (novelties == 0).sum() > 100


@pytest.mark.parametrize("exclude, memory, sizes", [(1, 4, [100, 1, 37]), (3, 40, [1, 2, 5, 50])])
def test_a_row_sees_the_window_stored_just_before_it_and_not_one_overwritten(fitted, exclude, memory, sizes):
    """block 1: the window stored at row t is a neighbour of row t + exclude, and the nearest one of a slow
    walk (whose consecutive windows overlap); memory 4: a window stored in the call is overwritten four
    stores later, within the same call; small calls: the first rows of a call see the windows of the last
    rows before it. A row that saw a window one row early or late, or one overwritten, would differ from
    the reference."""
    streams = triplets(fitted, block=1, window=6, memory=memory, exclude=exclude)
    rng = np.random.default_rng(14)
    walk = float(fitted.center_[0]) + float(fitted.scale_[0]) * np.cumsum(0.05 * rng.standard_normal((400, 2)), 0)
    for stream in streams:
        feed(stream, walk, ["a", "b"], sizes)
    assert_all_same(*streams)
    novelty = np.concatenate(streams[0].log)
    assert (novelty[10:] > 0).mean() > 0.9


def test_nan_follows_the_reference(fitted):
    """NaN in a row's window (NaN if it sees any stored window), in windows stored during the call and in
    the index (a NaN that later rows see, until it is overwritten): NaN exactly where the reference's is
    (the search called directly; the chain refuses NaN)."""
    streams = triplets(fitted, block=1, window=4, memory=150)
    values = hard_series(fitted, 600, seed=15)[:, :3, None]
    values[200:202, 0, 0] = np.nan   # stored, then searched by later calls until overwritten
    values[431, 1, 0] = np.nan       # stored during the call, seen by the later rows of that call
    values[5, 2, 0] = np.nan         # a NaN window before anything is stored
    for stream in streams:
        rows = stream._rows(["a", "b", "c"])
        for part in np.array_split(values, 5):
            stream._novelty(part, rows, learn=True)
            stream.seen[rows] += len(part)
        stream._novelty(values[:30], rows, learn=False)
    for got, row_by_row, expected in zip(*(s.log for s in streams)):
        np.testing.assert_array_equal(got, row_by_row)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)  # (NaN where NaN)
    novelty = np.concatenate(streams[0].log[:5])
    assert np.isnan(novelty[205:350, 0]).all() and not np.isnan(novelty[-100:, 0]).any()
    assert np.isnan(novelty[432:440, 1]).all()


@pytest.mark.parametrize("batched", [True, False])
def test_learn_false_leaves_the_state_and_the_index(fitted, batched):
    stream = triplets(fitted, block=2, window=3, memory=60)[0 if batched else 1]
    x = series_set(200, seed=16)
    feed(stream, x[:, :3], ["a", "b", "c"], [50])
    before = {name: getattr(stream, name).copy() for name in WindowNovelty.STATE}
    index = {name: getattr(stream._index, name).copy() for name in INDEX}
    rows = stream._rows(["c", "a"])
    stream._novelty(x[:30, [2, 0], None], rows, learn=False)
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(stream, name), array, err_msg=name)
    for name, array in index.items():
        np.testing.assert_array_equal(getattr(stream._index, name), array, err_msg=name)


def test_a_nearer_window_in_the_next_column_is_found(fitted):
    """Constant windows (a level held for 10 rows): their squared distance is exactly ``F`` times the
    squared difference of their keys, the bound that rules columns out. Stored: levels ``0.1 i``; then
    queried: levels ``0.1 i + 0.05025``, whose nearest stored level is the one above (0.04975 away, in the
    next column where a column starts there) and the one below only 1 % farther (in the row's own column,
    searched first). A column bound a few per cent too high would keep the one below."""
    streams = triplets(fitted, block=1, window=4, memory=1400, exclude=12)
    center, scale = float(fitted.center_[0]), float(fitted.scale_[0])
    rng = np.random.default_rng(17)
    levels = -3.0 + 0.1 * np.arange(60)
    columns = []
    for i, order in enumerate([rng.permutation(60), rng.permutation(59)]):
        held = np.repeat(levels[order] + (0.05025 if i else 0.0), 10)
        columns.append(center + scale * held)
    x = np.concatenate(columns)[:, None] + np.zeros((1, 2))
    x[:, 1] = center + scale * (np.repeat(np.concatenate([levels[::-1], levels[:-1] + 0.05025]), 10))
    for stream in streams:
        feed(stream, x, ["shuffled", "sorted"], [100, 9, 300])
    assert_all_same(*streams)
    assert streams[0]._index.ncol.max() >= 4
    novelty = np.concatenate(streams[0].log)[600:]
    pure = np.isclose(novelty, 0.04975, rtol=1e-6)
    assert pure.sum() > 200  # the nearest is the level above (the one below would give 0.05025)
