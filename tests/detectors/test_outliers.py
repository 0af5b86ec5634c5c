"""Any finite outlier scores high and leaves every detector and stream finite (issue 10, item 2).

The normalised input is clipped to ``INPUT_CLIP`` robust units before any model sees it,
the online normaliser's step is clipped in units of its scale and the seasonal residual
is bounded, so 1e39 (above float32's maximum) or -1e308 cannot put inf / NaN in a state.
"""
import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors import (AnomalyLikelihood, PeakSuppression, SeasonalSurprise, SelectiveUpdateDetector,
                                 SpatialAnomaly, StreamScorer, WindowNovelty)
from sparsernn.detectors.nab import SelectiveUpdateNAB
from sparsernn.detectors.normalization import INPUT_CLIP, ew_mean_var

from .conftest import SMALL

OUTLIERS = [1000.0, 1e30, 1e39, -1e308, 1.7e308]


@pytest.fixture(scope="module")
def sine_detector():
    x = np.sin(np.arange(400) / 5.0)
    return SelectiveUpdateDetector(**SMALL, seed=0).fit(x), x


@pytest.mark.parametrize("outlier", OUTLIERS)
def test_detector_scores_stay_finite_after_an_outlier_and_the_outlier_is_anomalous(sine_detector, outlier):
    detector, x = sine_detector
    y = np.sin(np.arange(300) / 5.0)
    y[200] = outlier
    scores = detector.decision_function(y)
    assert np.isfinite(scores).all()
    labels = detector.predict(y)
    assert labels[200] == 1 and scores[200] > 100 * scores[:200].max()
    # what the state absorbed is bounded: 60 points later the scores are back among normal ones
    assert scores[260:].max() < scores[200]


def chains(detector):
    """One fresh instance of the scorer and of every wrapper (each around a scorer with an online normaliser)."""
    scorer = lambda: StreamScorer(detector, normalizer_halflife=20.0)  # noqa: E731
    return {
        "scorer": scorer(),
        "scorer-fixed": StreamScorer(detector),
        "likelihood": AnomalyLikelihood(scorer(), learning_period=20, estimation_samples=20),
        "seasonal": SeasonalSurprise(scorer(), period=31),
        "novelty": WindowNovelty(AnomalyLikelihood(scorer(), learning_period=20, estimation_samples=20),
                                 block=2, window=4, learning_period=20, estimation_samples=20),
        "suppression": PeakSuppression(scorer(), period=10),
        "spatial": SpatialAnomaly(AnomalyLikelihood(scorer(), learning_period=20, estimation_samples=20)),
    }


@pytest.mark.parametrize("outlier", OUTLIERS)
def test_every_stream_stays_finite_after_an_outlier_point_by_point_and_in_blocks(sine_detector, outlier):
    detector, x = sine_detector
    for name, stream in chains(detector).items():
        for value in x[:80]:
            stream.learn_one(float(value))
        at_outlier = stream.score_one(outlier)
        assert np.isfinite(at_outlier), name
        stream.learn_one(outlier)
        after = [stream.score_one(float(v)) for v in x[80:100]]
        for v in x[80:100]:
            stream.learn_one(float(v))
        block = stream.process(np.r_[x[100:120], outlier, x[120:200]][:, None])
        assert np.isfinite(after).all() and np.isfinite(block).all(), name
    scorer = chains(detector)["scorer"]
    for value in x[:80]:
        scorer.learn_one(float(value))
    quiet = max(scorer.score_one(float(v)) for v in x[80:90])
    assert scorer.score_one(outlier) > 100 * max(quiet, 1e-3)  # the outlier itself scores as anomalous
    for name in ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var"):
        assert np.isfinite(getattr(scorer, name)).all()


def test_online_normaliser_stays_finite_for_extreme_values():
    x = np.array([0.0, 1e308, -1e308, 1.7e308, -1.7e308, 1.0] * 50)[:, None]
    means, variances, mean, var = ew_mean_var(x, np.zeros(1), np.ones(1), 0.1, floor=0.05)
    assert np.isfinite(means).all() and np.isfinite(variances).all() and np.isfinite(var).all()


def test_the_nab_chain_stays_finite_after_a_1e30_spike():
    rng = np.random.default_rng(0)
    n = 600
    x = np.sin(2 * np.pi * np.arange(n) / 48) + 0.1 * rng.standard_normal(n)
    x[300] = 1e30
    stamps = pd.date_range("2024-01-01", periods=n, freq="30min")
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    scores = SelectiveUpdateNAB(seed=0, suppression=0.5, **params).run(x, 150, stamps)  # NAB default: fixed scaling
    assert np.isfinite(scores).all()
    assert scores[300] == 1.0  # the spike is an alarm (the spatial rule and the likelihood agree)
    assert ((scores[301:] >= 0) & (scores[301:] <= 1)).all()


def test_input_clip_is_documented():
    text = (__import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "detectors.md").read_text()
    assert f"{INPUT_CLIP:g}" in text and "INPUT_CLIP" in text
