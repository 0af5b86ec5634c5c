"""WindowNovelty's compiled nearest-window search (detectors/stream/nearest.py) against its NumPy reference
(``_novelty_reference``): same novelties, same ring / bank / stored state after every call; and the float32
bank's file versions (issue 14 item 4)."""
import numpy as np
import pytest
import torch

from sparsernn.detectors import AnomalyLikelihood, CorruptSaveError, StreamScorer, WindowNovelty, load_stream
from sparsernn.detectors.stream import persistence

LIKELIHOOD = dict(learning_period=10, estimation_samples=10)
SEARCH_STATE = ("ring", "bank", "bank_rows", "stored")


class LoggedNovelty(WindowNovelty):
    """A WindowNovelty that logs the novelties (T, B) of its calls; ``reference``: the NumPy search.
    (A class, not a patched instance: ``score_many`` of a new id runs on a copy of the chain.)"""

    def _novelty(self, values, rows, learn):
        out = (self._novelty_reference if self.reference else super()._novelty)(values, rows, learn)
        self.log.append(out.copy())
        return out


def twins(fitted, **settings):
    """Two equal fresh novelty chains: ``fast`` (the compiled search) and ``plain`` (the reference)."""
    pair = []
    for reference in (False, True):
        stream = LoggedNovelty(AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD), **settings, **LIKELIHOOD)
        stream.reference, stream.log = reference, []
        pair.append(stream)
    return pair


def assert_same(fast, plain):
    assert len(fast.log) == len(plain.log)
    for got, expected in zip(fast.log, plain.log):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for name in SEARCH_STATE:
        np.testing.assert_array_equal(getattr(fast, name), getattr(plain, name), err_msg=name)
        assert getattr(fast, name).dtype == getattr(plain, name).dtype


def feed(stream, values, streams, sizes):
    """``values`` (n, B) of ``streams`` through ``process`` in blocks of the given sizes (cycled)."""
    start, out, i = 0, [], 0
    while start < len(values):
        stop = start + sizes[i % len(sizes)]
        out.append(stream.process(values[start:stop], streams=streams))
        start, i = stop, i + 1
    return np.concatenate(out)


def series_set(n: int, seed: int) -> np.ndarray:
    """(n, 5): random walk, noisy sine, constant, huge values (clipped to the scaled range), pure noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    huge = np.where(rng.random(n) < 0.3, 1e12, -1e12) * rng.random(n)
    return np.stack([np.cumsum(rng.standard_normal(n)) * 0.3, np.sin(t / 5) + 0.1 * rng.standard_normal(n),
                     np.full(n, 0.7), huge, rng.standard_normal(n)], axis=1)


CASES = [
    dict(block=2, window=3, memory=7),               # the bank wraps within a call (memory < stores per call)
    dict(block=3, window=4, memory=50),              # the NAB chain's shape, smaller
    dict(block=1, window=5, memory=16, exclude=1),   # every window stored; a store is a neighbour of the next row
    dict(block=2, window=2, memory=30, exclude=400),  # exclude longer than the history: never a neighbour
    dict(block=4, window=2, memory=3, exclude=3),    # exclude shorter than the window
]


@pytest.mark.parametrize("settings", CASES)
def test_the_compiled_search_equals_the_reference(fitted, settings):
    fast, plain = twins(fitted, **settings)
    x = series_set(260, seed=1)
    names = ["walk", "sine", "flat", "huge", "noise"]
    for stream in (fast, plain):
        stream._rows(["other"])  # takes row 0: the streams below are not at rows 0..B-1
        feed(stream, x[:45, :2], names[:2], [1, 7, 30])                      # two streams start early
        feed(stream, x[:60, [3, 0]], [names[3], names[0]], [13])             # different ages in one call
        stream.score_many(x[60, [4, 1, 0]], [names[4], names[1], names[0]])  # learn=False, a new id included
        feed(stream, x[45:, [1, 2, 4]], [names[1], names[2], names[4]], [200, 1, 2, 19])
        for value in x[:6, 2]:
            stream.score_one(value, stream=names[0])
            stream.learn_one(value, stream=names[0])
        feed(stream, x[60:, [0, 3]], [names[0], names[3]], [5, 120])
    assert_same(fast, plain)
    novelties = np.concatenate([log.ravel() for log in fast.log])
    if settings.get("exclude", 0) < 100:
        assert (novelties > 0).sum() > 100  # the comparisons above are not all of zeros


def test_a_constant_or_repeated_series_has_zero_novelty_once_seen(fitted):
    fast, plain = twins(fitted, block=1, window=6, memory=40)  # block 1: every window is stored
    x = np.stack([np.full(120, 3.0), np.tile([0.0, 1.0, -2.0, 0.5], 30)], axis=1)
    for stream in (fast, plain):
        feed(stream, x, ["flat", "cycle"], [17])
    assert_same(fast, plain)
    novelty = np.concatenate(fast.log)
    assert np.all(novelty[24:] == 0.0)  # exactly: both sides of the distance are the same float32 embedding


def test_nan_follows_the_reference(fitted):
    """Calls with NaN are refused by the chain; the search itself (called directly) gives NaN where the
    reference does: a NaN embedding, or a NaN neighbour stored in the bank."""
    fast, plain = twins(fitted, block=2, window=2, memory=6)
    values = np.random.default_rng(0).standard_normal((40, 2, 1))
    values[17, 0, 0] = np.nan
    for stream in (fast, plain):
        rows = stream._rows(["a", "b"])
        for part in np.array_split(values, 3):
            stream._novelty(part, rows, learn=True)
            stream.seen[rows] += len(part)  # the likelihood's count, advanced by the chain
        stream._novelty(values[:5], rows, learn=False)
    for got, expected in zip(fast.log, plain.log):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(np.concatenate(fast.log)[:, 0]).any() and not np.isnan(np.concatenate(fast.log)[:, 1]).any()


def test_learn_false_changes_no_state(fitted):
    fast, _ = twins(fitted, block=2, window=3, memory=9)
    x = series_set(80, seed=2)
    feed(fast, x[:, :3], ["a", "b", "c"], [11])
    before = {name: getattr(fast, name).copy() for name in WindowNovelty.STATE}
    rows = fast._rows(["c", "a"])
    fast._novelty(x[:30, [2, 0], None], rows, learn=False)
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(fast, name), array, err_msg=name)


# ---------------------------------------------------------------- files: float32 bank, version 5
def test_a_novelty_file_is_version_5_and_an_older_float64_bank_still_loads(fitted, tmp_path):
    x = series_set(150, seed=3)[:, :3]
    stream = WindowNovelty(AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD), block=2, window=3, memory=20,
                           **LIKELIHOOD)
    stream.process(x[:90], ["a", "b", "c"])
    stream.save(tmp_path / "new.pt")
    payload = torch.load(tmp_path / "new.pt", weights_only=True)
    assert payload["version"] == persistence.NOVELTY_VERSION == 5
    assert payload["tensors"]["wrapper1.bank"].dtype == torch.float32

    def older(version, dtype):  # the same chain written by an earlier version, the bank as float64
        payload = torch.load(tmp_path / "new.pt", weights_only=True)
        payload["version"] = version
        payload["tensors"]["wrapper1.bank"] = payload["tensors"]["wrapper1.bank"].to(dtype)
        payload["sha256"] = persistence._checksum(payload["config"], payload["tensors"])
        path = tmp_path / f"v{version}.pt"
        torch.save(payload, path)
        return path

    old = load_stream(older(3, torch.float64))
    assert old.bank.dtype == np.float32
    np.testing.assert_array_equal(old.bank, stream.bank)
    np.testing.assert_array_equal(old.process(x[90:], ["a", "b", "c"]), stream.process(x[90:], ["a", "b", "c"]))
    with pytest.raises(CorruptSaveError, match="dtype"):  # a version-5 file must hold the float32 bank
        load_stream(older(5, torch.float64))
    with pytest.raises(CorruptSaveError, match="dtype"):  # and an old file the float64 one
        load_stream(older(4, torch.float16))
