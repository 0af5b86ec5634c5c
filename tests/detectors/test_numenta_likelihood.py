"""NumentaLikelihood: NAB's estimator (probation, windowed re-estimation, red-zone filter, log-score)."""
import math

import numpy as np
import pytest
from scipy.stats import norm

from sparsernn.detectors import NumentaLikelihood, StreamScorer


class Surprises:
    """A stand-in scorer whose surprises are given (one stream)."""

    stream_ids = [0]

    def __init__(self, surprises):
        self.surprises = np.asarray(surprises, dtype=float)

    def process(self, X, streams=None, timestamps=None):
        return self.surprises[:, None]

    def _rows(self, streams):
        return np.array([0])

    def _streams(self, streams, n):
        return [0]


def reference(s, learning, samples, k=10, window=8640, every=100):
    """NAB's loop, plainly, on surprises ``s``."""
    averages, scores, dist, last_q = [], [], None, 1.0
    for t, x in enumerate(s):
        a = np.mean(s[max(0, t - k + 1): t + 1])
        if t < learning + samples:
            q = reported = 0.5
        else:
            if dist is None or t % every == 0:
                vals = np.array(averages[max(learning, t - window): t])
                dist = max(vals.mean(), 0.03), math.sqrt(max(vals.var(), 0.0003))
                last_q = norm.sf(averages[-1], *dist)
            q = norm.sf(a, *dist)
            reported = 1e-3 if q <= 1e-5 and last_q <= 1e-5 else q
        averages.append(a)
        last_q = q
        scores.append(min(1.0, math.log(reported + 1e-10) / math.log(1e-10)))
    return np.array(scores)


def test_matches_the_plain_loop_with_a_sliding_window():
    rng = np.random.default_rng(0)
    s = rng.gamma(1.0, 0.5, 1500)
    s[900:905] += 30.0  # a burst
    ours = NumentaLikelihood(Surprises(s), learning_period=50, estimation_samples=70, historic_window=400,
                             reestimation_period=37).process(None)[:, 0]
    np.testing.assert_allclose(ours, reference(s, 50, 70, window=400, every=37), rtol=1e-9, atol=1e-12)


def test_probation_then_one_red_score_per_sustained_anomaly():
    s = np.full(600, 0.5) + 0.1 * np.sin(np.arange(600))
    s[400:460] = 50.0  # a sustained anomaly
    scores = NumentaLikelihood(Surprises(s), learning_period=100, estimation_samples=100).process(None)[:, 0]
    assert np.allclose(scores[:200], math.log(0.5 + 1e-10) / math.log(1e-10))  # probation: probability 0.5
    red = np.flatnonzero(scores >= 0.5)
    assert red[0] == 400 and scores[400] == 1.0  # the entry into the red zone
    yellow = math.log(1e-3 + 1e-10) / math.log(1e-10)
    assert np.allclose(scores[401:410], yellow)  # then yellow while it stays red
    assert scores[:400].max() < 0.5


def test_block_equals_point_by_point_and_score_one_changes_nothing(fitted, series):
    x = series[0][:400]
    block = NumentaLikelihood(StreamScorer(fitted), learning_period=40, estimation_samples=60, reestimation_period=25)
    blocks = np.concatenate([block.process(part[:, None])[:, 0] for part in np.array_split(x, 7)])
    point = NumentaLikelihood(StreamScorer(fitted), learning_period=40, estimation_samples=60, reestimation_period=25)
    singles = []
    for value in x:
        score = point.score_one(value)
        assert point.score_one(value) == score
        singles.append(score)
        point.learn_one(value)
    np.testing.assert_allclose(blocks, singles, rtol=1e-9, atol=1e-12)
    surprises = StreamScorer(fitted).process(x[:, None])[:, 0]
    np.testing.assert_allclose(blocks, reference(surprises, 40, 60, every=25), rtol=1e-9, atol=1e-12)


def test_streams_are_independent(fitted, series):
    x = np.stack([series[0][:300], series[0][:300][::-1]], axis=1)
    both = NumentaLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30)
    scores = both.process(x, streams=["a", "b"])
    for column in range(2):
        alone = NumentaLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30)
        np.testing.assert_allclose(scores[:, column], alone.process(x[:, column:column + 1])[:, 0], rtol=1e-9)


@pytest.mark.parametrize("kwargs", [dict(learning_period=-1), dict(estimation_samples=0), dict(averaging_window=0),
                                    dict(reestimation_period=1.5), dict(historic_window=10, estimation_samples=20),
                                    dict(alarm_threshold=0.0)])
def test_bad_settings_are_rejected(fitted, kwargs):
    with pytest.raises(ValueError):
        NumentaLikelihood(StreamScorer(fitted), **kwargs)
