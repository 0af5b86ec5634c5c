"""AnomalyLikelihood: NAB's estimator (probation, windowed re-estimation, red-zone filter, log-score),
the same code for a whole series (likelihood_scores, anomaly_likelihood) and for streams."""
import math

import numpy as np
import pytest
from scipy.stats import norm

import pandas as pd

from sparsernn.detectors import AnomalyLikelihood, StreamScorer
from sparsernn.detectors.nab.baselines import anomaly_likelihood
from sparsernn.detectors.stream import likelihood_scores

from .conftest import blocks_and_points


class Surprises:
    """A stand-in scorer whose surprises are given (one stream)."""

    stream_ids = [0]

    def __init__(self, surprises):
        self.surprises = np.asarray(surprises, dtype=float)

    def process(self, X, streams=None, timestamps=None):
        return self.surprises[:, None]

    def stream_rows(self, streams):
        return np.array([0])

    def check_streams(self, streams, n):
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
    ours = AnomalyLikelihood(Surprises(s), learning_period=50, estimation_samples=70, historic_window=400,
                             reestimation_period=37).process(None)[:, 0]
    np.testing.assert_allclose(ours, reference(s, 50, 70, window=400, every=37), rtol=1e-9, atol=1e-12)
    whole = likelihood_scores(s, 50, 70, historic_window=400, reestimation_period=37)
    np.testing.assert_array_equal(whole, ours)  # one implementation


def test_baselines_calibration_is_the_same_likelihood_on_robust_z_units():
    rng = np.random.default_rng(1)
    raw = rng.normal(5.0, 2.0, 800)
    raw[600] += 40.0
    z = (raw - np.median(raw[20:200])) / (1.4826 * np.median(np.abs(raw[20:200] - np.median(raw[20:200]))))
    np.testing.assert_array_equal(anomaly_likelihood(raw, probationary=200, warmup=20),
                                  likelihood_scores(z, learning_period=20, estimation_samples=180))


def test_probation_then_one_red_score_per_sustained_anomaly():
    s = np.full(600, 0.5) + 0.1 * np.sin(np.arange(600))
    s[400:460] = 50.0  # a sustained anomaly
    scores = AnomalyLikelihood(Surprises(s), learning_period=100, estimation_samples=100).process(None)[:, 0]
    assert np.allclose(scores[:200], math.log(0.5 + 1e-10) / math.log(1e-10))  # probation: probability 0.5
    red = np.flatnonzero(scores >= 0.5)
    assert red[0] == 400 and scores[400] == 1.0  # the entry into the red zone
    yellow = math.log(1e-3 + 1e-10) / math.log(1e-10)
    assert np.allclose(scores[401:410], yellow)  # then yellow while it stays red
    assert scores[:400].max() < 0.5


def test_block_equals_point_by_point_and_score_one_changes_nothing(fitted, series):
    x = series[0][:400]
    blocks, singles = blocks_and_points(lambda: AnomalyLikelihood(
        StreamScorer(fitted), learning_period=40, estimation_samples=60, reestimation_period=25), x)
    np.testing.assert_allclose(blocks, singles, rtol=1e-9, atol=1e-12)
    surprises = StreamScorer(fitted).process(x[:, None])[:, 0]
    np.testing.assert_allclose(blocks, reference(surprises, 40, 60, every=25), rtol=1e-9, atol=1e-12)


def test_streams_are_independent(fitted, series):
    x = np.stack([series[0][:300], series[0][:300][::-1]], axis=1)
    both = AnomalyLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30)
    scores = both.process(x, streams=["a", "b"])
    for column in range(2):
        alone = AnomalyLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30)
        np.testing.assert_allclose(scores[:, column], alone.process(x[:, column:column + 1])[:, 0], rtol=1e-9)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(learning_period=-1), ValueError, "learning_period"), (dict(estimation_samples=0), ValueError, "estimation"),
    (dict(averaging_window=0), ValueError, "averaging_window"), (dict(reestimation_period=1.5), TypeError, "reest"),
    (dict(historic_window=10, estimation_samples=20), ValueError, "historic_window"),
    (dict(alarm_threshold=0.0), ValueError, "alarm_threshold")])
def test_bad_settings_are_rejected(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        AnomalyLikelihood(StreamScorer(fitted), **kwargs)


def test_pandas_chunks_give_a_frame_on_the_index_and_equal_the_block(fitted, series):
    x = series[0][:300]
    index = pd.date_range("2024-01-01", periods=len(x), freq="h")
    stream = AnomalyLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30)
    frame = pd.concat([stream.score_then_learn(pd.Series(x[:120], index=index[:120])),
                       stream.score_then_learn(pd.Series(x[120:], index=index[120:]))])
    assert list(frame.columns) == ["surprise", "score", "alarm"] and frame.index.equals(index)
    block = AnomalyLikelihood(StreamScorer(fitted), learning_period=30, estimation_samples=30).process(x[:, None])
    np.testing.assert_array_equal(frame["score"].to_numpy(), block[:, 0])


def test_bounded_reads_one_minus_exp_of_the_surprise():
    rng = np.random.default_rng(3)
    s = 0.5 * rng.standard_normal(500) ** 2
    s[350] = 400.0  # one huge surprise
    s[420:440] = 6.0  # a run of large ones
    bounded = AnomalyLikelihood(Surprises(s), learning_period=100, estimation_samples=100, bounded=True)
    got = bounded.process(None)[:, 0]
    np.testing.assert_allclose(got, reference(1.0 - np.exp(-s), 100, 100), rtol=1e-9, atol=1e-12)
    plain = AnomalyLikelihood(Surprises(s), learning_period=100, estimation_samples=100).process(None)[:, 0]
    assert plain[350] == 1.0 and got[350] < 0.5  # alone, the huge surprise is an alarm only unbounded
    assert got[420:440].max() >= 0.5  # a run of large surprises still is
    assert bounded.settings()["bounded"] is True and "bounded" not in AnomalyLikelihood(Surprises(s)).settings()


def test_bounded_block_equals_point_by_point_and_saves(fitted, series, tmp_path):
    x = series[0][:400]
    make = lambda: AnomalyLikelihood(StreamScorer(fitted), learning_period=40, estimation_samples=60, bounded=True)
    blocks, singles = blocks_and_points(make, x)
    np.testing.assert_allclose(blocks, singles, rtol=1e-9, atol=1e-12)  # as unbounded: sums in another order
    surprises = StreamScorer(fitted).process(x[:, None])[:, 0]
    np.testing.assert_allclose(blocks, reference(1.0 - np.exp(-surprises), 40, 60), rtol=1e-9, atol=1e-12)
    stream = make()
    first = stream.process(x[:150, None])
    stream.save(tmp_path / "l.pt")
    loaded = AnomalyLikelihood.load(tmp_path / "l.pt")
    assert loaded.bounded is True
    np.testing.assert_array_equal(np.concatenate([first, loaded.process(x[150:, None])])[:, 0], blocks)
    with pytest.raises(TypeError, match="bounded"):
        AnomalyLikelihood(StreamScorer(fitted), bounded="yes")
