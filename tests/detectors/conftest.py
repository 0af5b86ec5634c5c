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
