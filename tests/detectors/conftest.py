"""Fixtures for the selective-update detector and stream tests: tiny models, few steps."""
import numpy as np
import pytest

from sparsernn.detectors import SelectiveUpdateDetector

SMALL = dict(hidden_size=8, n_steps=4, batch_size=8, window=24, burn_in=4, progress=False, warmup=5)


def synthetic_series(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy sine with injected spikes; returns (values (n,), labels (n,) of 0/1).

    A spike at t and the point after it (whose forecast the spike misleads) are labelled.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.sin(2 * np.pi * t / 40) + 0.05 * rng.standard_normal(n)
    labels = np.zeros(n, dtype=int)
    for at in range(150, n, 97):
        values[at] += 4.0 * (1 if at % 2 else -1)
        labels[at: at + 2] = 1
    return values, labels


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_series()


@pytest.fixture(scope="module")
def fitted(series) -> SelectiveUpdateDetector:
    return SelectiveUpdateDetector(**SMALL, seed=3).fit(series[0])


def blocks_and_points(make_stream, x: np.ndarray, parts: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n,) of a one-channel series ``x`` (n,) from two fresh ``make_stream()``: one fed
    ``parts`` blocks through ``process``, one fed point by point through ``score_one`` /
    ``learn_one`` (asserting that ``score_one`` changes no state). Returns ``(blocks, singles)``."""
    block = make_stream()
    blocks = np.concatenate([block.process(part[:, None])[:, 0] for part in np.array_split(x, parts)])
    point = make_stream()
    singles = []
    for value in x:
        score = point.score_one(value)
        assert point.score_one(value) == score  # no state change
        singles.append(score)
        point.learn_one(value)
    return blocks, np.array(singles)


def batched_and_alone(det, x: np.ndarray, **scorer_options):
    """Three streams made from ``x`` (n,), scored batched in two calls by one ``StreamScorer(det,
    **scorer_options)``, and each alone by a fresh one; asserts the two agree (to float rounding) and
    returns the batched scorer."""
    from sparsernn.detectors import StreamScorer

    block, ids = np.stack([x, -x, 2 * x + 1], axis=1), ["a", "b", 7]
    half = len(x) // 2
    batched = StreamScorer(det, **scorer_options)
    got = np.concatenate([batched.process(block[:half], ids), batched.process(block[half:], ids)])
    for column, sid in enumerate(ids):
        alone = StreamScorer(det, **scorer_options).process(block[:, column][:, None], [sid])[:, 0]
        np.testing.assert_allclose(got[:, column], alone, rtol=1e-5, atol=1e-7)
    return batched


def resumed_chain(nab, x: np.ndarray, tmp_path, n: int = 333):
    """``nab``'s chain (probationary 100, hourly timestamps) over two streams made from ``x``, saved after
    ``n`` rows and loaded; asserts that the loaded scorer's arrays (``state_arrays``) equal the saved
    one's and that the loaded chain continues exactly as an uninterrupted one. Returns the loaded chain."""
    import pandas as pd

    stamps = pd.date_range("2024-01-01", periods=len(x), freq="h")
    block = np.stack([x, x[::-1] * 1.5 + 1.0], axis=1)
    stream, uninterrupted = (nab.pipeline(x, probationary=100, timestamps=stamps) for _ in range(2))
    expected = uninterrupted.process(block, ["a", "b"])
    np.testing.assert_array_equal(stream.process(block[:n], ["a", "b"]), expected[:n])
    stream.save(tmp_path / "chain.pt")
    loaded = type(stream).load(tmp_path / "chain.pt")
    saved, restored = stream._scorer.state_arrays(), loaded._scorer.state_arrays()
    assert saved.keys() == restored.keys()
    for name, array in saved.items():
        np.testing.assert_array_equal(restored[name], array, err_msg=name)
    np.testing.assert_array_equal(loaded.process(block[n:], ["a", "b"]), expected[n:])
    return loaded
