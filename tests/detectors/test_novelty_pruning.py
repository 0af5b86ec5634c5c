"""The pruned nearest-window search (detectors/stream/nearest.py, its index in search_index.py) against the NumPy
reference where pruning decides: full stores that wrap many times past ``memory`` (and merge the index's
unsorted tail), near-ties, exact ties, values at the clip, NaN; the index as a cache (rebuilt after a load or
``reindex``, never saved) (issue 14 item 4)."""
import copy

import numpy as np
import pytest

from sparsernn.detectors import AnomalyLikelihood, StreamScorer, WindowNovelty, load_stream
from sparsernn.detectors.normalization import INPUT_CLIP
from sparsernn.detectors.stream.search_index import PENDING
from . import test_novelty_search as search_tests
from .test_novelty_search import CASES, LIKELIHOOD, assert_same, feed
from .test_novelty_search import twins as plain_twins


def twins(fitted, scan_limit=0, **settings):
    """test_novelty_search's twins, the compiled one searching through its index from the first store
    (``scan_limit=0``) rather than comparing with every slot while the store is small."""
    fast, plain = plain_twins(fitted, **settings)
    fast.scan_limit = scan_limit
    return fast, plain


@pytest.mark.parametrize("settings", CASES)
def test_the_search_cases_through_the_index(fitted, settings, monkeypatch):
    """test_novelty_search's cases (the bank wrapping within a call, ``exclude`` past the history or shorter
    than the window, streams of different ages, ``learn=False``) with the index from the first store."""
    monkeypatch.setattr(WindowNovelty, "scan_limit", 0)
    search_tests.test_the_compiled_search_equals_the_reference(fitted, settings)


def test_ties_at_zero_through_the_index(fitted, monkeypatch):
    monkeypatch.setattr(WindowNovelty, "scan_limit", 0)
    search_tests.test_a_constant_or_repeated_series_has_zero_novelty_once_seen(fitted)


def hard_series(fitted, n: int, seed: int) -> np.ndarray:
    """(n, 5) raw values whose scaled windows make pruning close: a noisy sine (many windows within the
    noise of the nearest), an exact cycle of 7 (ties), a sine near the clip with differences far below
    its magnitude, a random walk, and a series that jumps between the two clips."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    center, scale = float(fitted.center_[0]), float(fitted.scale_[0])
    units = np.stack([np.sin(2 * np.pi * t / 25) + 0.05 * rng.standard_normal(n),
                      np.tile([0.0, 1.0, 0.5, -1.0, 2.0, 0.25, -0.5], n // 7 + 1)[:n],
                      (INPUT_CLIP - 0.5) + 1e-3 * np.sin(2 * np.pi * t / 25) + 1e-5 * rng.standard_normal(n),
                      np.cumsum(0.2 * rng.standard_normal(n)),
                      np.where(rng.random(n) < 0.5, 10.0, -10.0) * INPUT_CLIP], axis=1)
    return center + scale * units


@pytest.mark.parametrize("settings", [
    dict(block=2, window=4, memory=40),              # F = 8 in 4 groups of 2; wraps ~8 times
    dict(block=2, window=4, memory=200, scan_limit=90),  # streams change from the scan to the index
    dict(block=1, window=8, memory=300, exclude=3),  # every window stored: > PENDING stores, several merges
    dict(block=3, window=3, memory=25),              # F = 3: 3 groups of 1
])
def test_full_wrapping_stores_equal_the_reference(fitted, settings):
    fast, plain = twins(fitted, **settings)
    x = hard_series(fitted, 720, seed=4)
    names = ["sine", "cycle", "clip", "walk", "jumps"]
    for stream in (fast, plain):
        feed(stream, x[:, :3], names[:3], [1, 37, 200, 5])
        feed(stream, x[:500, 3:], names[3:], [250])  # other streams, other ages, one call past a merge
        feed(stream, x[500:, [4, 0]], [names[4], names[0]], [64, 3])
    assert_same(fast, plain)
    assert (fast.stored > settings["memory"]).all() and (fast.stored > PENDING).any()
    novelties = np.concatenate([log.ravel() for log in fast.log])
    assert (novelties > 0).sum() > 500 and (novelties == 0).sum() > 100  # near-ties and exact ties both


@pytest.mark.parametrize("block, window", [(1, 8), (2, 3)])
def test_stores_of_many_columns_equal_the_reference(fitted, block, window):
    """Stores large enough for the index's grid (columns of keys, each walked by its second key, rebuilt as
    they widen), filled past ``memory``: the hard series (near-ties, exact ties, the clip, jumps) and pure
    noise. Where pruning by the column's keys or by the second key were a little too eager, some novelty
    would differ."""
    fast, plain = twins(fitted, block=block, window=window, memory=1100)
    x = hard_series(fitted, 2600, seed=9)
    rng = np.random.default_rng(10)
    x = np.concatenate([x, float(fitted.center_[0]) + float(fitted.scale_[0]) * rng.standard_normal((2600, 1))], 1)
    for stream in (fast, plain):
        feed(stream, x, ["sine", "cycle", "clip", "walk", "jumps", "noise"], [300, 7, 500, 64])
    assert_same(fast, plain)
    rows = fast._rows(["sine", "walk", "noise"])
    assert (fast._index.ncol[rows] >= 4).all() and (fast.stored > 1100).all()


@pytest.mark.parametrize("scan_limit, memory", [(0, 50), (10 ** 6, 50), (0, 700), (10 ** 6, 700)])
def test_the_index_matches_the_bank(fitted, scan_limit, memory):
    """After every call the index holds exactly the filled slots, in columns of keys each sorted by second
    key, with their statistics (a property of the cache, whatever the search makes of it; kept by both the
    search and the scan of small stores; ``memory=700``: several columns, rebuilt as they widen)."""
    stream, _ = twins(fitted, scan_limit, block=1, window=4, memory=memory)
    x = hard_series(fitted, 1200, seed=5)
    columns = 0
    for part in np.array_split(x[:, :2], 9):
        stream.process(part, ["a", "b"])
        index = stream._index
        for r in stream._rows(["a", "b"]):
            entries = list(range(index.size[r] - index.nans[r]))
            pending = list(range(stream.memory, stream.memory + index.pending[r]))
            numbers = index.numbers[r, entries + pending]
            live = numbers >= stream.stored[r] - stream.memory
            slots = numbers[live] % stream.memory
            assert sorted(slots) == list(range(min(stream.stored[r], stream.memory)))
            nc = index.ncol[r]
            columns = max(columns, nc)
            starts, bounds = index.cstart[r, :nc + 1], np.append(index.cbound[r, :nc], np.inf)
            assert starts[0] == 0 and starts[-1] == len(entries) and (np.diff(starts) >= 0).all()
            for c in range(nc):
                keys = index.keys[r, starts[c]:starts[c + 1]]
                assert ((keys >= bounds[c]) & (keys < bounds[c + 1])).all()
                assert (np.diff(index.second[r, starts[c]:starts[c + 1]]) >= 0).all()
                if len(keys):
                    assert index.kmin[r, c] == keys.min() and index.kmax[r, c] == keys.max()
            where = np.array(entries + pending)[live]
            bank = stream.bank[r, slots].astype(float)
            np.testing.assert_allclose(index.keys[r, where], bank.mean(1), rtol=1e-12)
            np.testing.assert_allclose(index.second[r, where], bank[:, :2].mean(1) - bank[:, 2:].mean(1),
                                       rtol=1e-6, atol=1e-7)
            groups = bank.reshape(len(slots), 4, -1)  # F = 4 features in 4 groups
            np.testing.assert_allclose(index.stats[r, :4, where], groups.mean(2), rtol=1e-6)
            np.testing.assert_allclose(index.stats[r, 4:, where], groups.std(2), rtol=1e-6, atol=1e-7)
    assert columns == 1 if memory == 50 else columns >= 5


def test_a_loaded_or_reindexed_stream_continues_as_if_uninterrupted(fitted, tmp_path):
    """The index is not saved: a loaded chain rebuilds it and scores the rest exactly as the chain that
    never stopped; so does one whose index was dropped (``reindex``) or copied."""
    x = hard_series(fitted, 500, seed=6)[:, :3]
    names = ["a", "b", "c"]
    stream = WindowNovelty(AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD), block=2, window=4, memory=30,
                           **LIKELIHOOD)
    stream.scan_limit = 0
    stream.process(x[:260], names)
    stream.save(tmp_path / "chain.pt")
    copied = copy.deepcopy(stream)
    reindexed = copy.deepcopy(stream)
    reindexed.reindex()
    built = copy.deepcopy(stream)
    built.reindex(build=True)
    loaded = load_stream(tmp_path / "chain.pt")
    loaded.scan_limit = 0
    expected = stream.process(x[260:], names)
    for other in (loaded, copied, reindexed, built):
        np.testing.assert_array_equal(other.process(x[260:], names), expected)
        np.testing.assert_array_equal(other.bank, stream.bank)


def test_nan_through_merges_follows_the_reference(fitted):
    """NaN embeddings stored, kept unsorted, moved past the sorted keys at a merge, then overwritten: the
    novelty is NaN exactly where the reference's is (the search called directly; the chain refuses NaN).
    Stream "b"'s NaN windows are otherwise far from the rows that later see them (levels 0, then 20, then
    -20), so a NaN entry pruned by its finite groups would show."""
    fast, plain = twins(fitted, block=1, window=8, memory=200)  # memory > PENDING: the NaN tail is used
    values = hard_series(fitted, 480, seed=7)[:, :2, None]
    rng = np.random.default_rng(8)
    levels = np.concatenate([np.zeros(100), [np.nan], np.full(10, 20.0), np.full(369, -20.0)])
    values[:, 1, 0] = float(fitted.center_[0]) + float(fitted.scale_[0]) * (levels + 0.1 * rng.standard_normal(480))
    values[150:153, 0, 0] = np.nan
    for stream in (fast, plain):
        rows = stream._rows(["a", "b"])
        for part in np.array_split(values, 7):
            stream._novelty(part, rows, learn=True)
            stream.seen[rows] += len(part)
    for got, expected in zip(fast.log, plain.log):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    novelty = np.concatenate(fast.log)
    assert (fast.stored > PENDING).all()
    assert np.isnan(novelty[120:300, 1]).all() and not np.isnan(novelty[-60:]).any()  # NaN until overwritten
    assert np.isnan(novelty[270:340, 0]).all()  # stream a: NaN entries in the sorted part's NaN tail
