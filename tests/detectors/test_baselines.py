"""Baseline NAB stream detectors: the causal boundary, the [0, 1] range, seeding, the runner."""
import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors.nab.baselines import (
    HalfSpaceTreesDetector,
    IForestDetector,
    LSTMDetector,
    NABStreamDetector,
    anomaly_likelihood,
    lagged_windows,
    run_corpus,
)
from sparsernn.detectors.nab.corpus import CostProfile, NABCorpus, NABDataFile
from sparsernn.detectors.nab.registry import BASELINES, DETECTORS

N, PROBATIONARY, CUT = 300, 100, 180

# Tiny configurations so the whole file runs in seconds.
SMALL = {
    "iforest": lambda seed: IForestDetector(window=8, n_estimators=20, seed=seed),
    "lstm": lambda seed: LSTMDetector(window=10, hidden_size=8, epochs=2, batch_size=32, seed=seed),
    "halfspacetrees": lambda seed: HalfSpaceTreesDetector(n_lags=3, window_size=40, seed=seed),
}


def series(seed=0, n=N):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = np.sin(2 * np.pi * t / 25) + 0.1 * rng.standard_normal(n)
    values[220:226] += 4.0  # an anomaly after the cut
    return values


@pytest.mark.parametrize("name", sorted(SMALL))
def test_scores_lie_in_unit_interval(name):
    scores = SMALL[name](0).run(series(), PROBATIONARY)
    assert scores.shape == (N,)
    assert np.all(np.isfinite(scores))
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert scores[PROBATIONARY:].std() > 0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_changing_the_future_leaves_past_scores_unchanged(name):
    values = series()
    changed = values.copy()
    changed[CUT + 1 :] = np.random.default_rng(7).normal(5.0, 3.0, N - CUT - 1)
    before = SMALL[name](0).run(values, PROBATIONARY)
    after = SMALL[name](0).run(changed, PROBATIONARY)
    np.testing.assert_array_equal(before[: CUT + 1], after[: CUT + 1])
    assert not np.array_equal(before[CUT + 1 :], after[CUT + 1 :])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_scores(name):
    values = series()
    np.testing.assert_array_equal(SMALL[name](3).run(values, PROBATIONARY), SMALL[name](3).run(values, PROBATIONARY))


@pytest.mark.parametrize("name", ["iforest", "lstm"])
def test_the_spike_scores_above_normal_rows(name):
    scores = SMALL[name](0).run(series(), PROBATIONARY)
    assert scores[220:230].max() > np.quantile(scores[PROBATIONARY:200], 0.9)


def test_registry_builds_every_baseline():
    assert set(BASELINES) == {"iforest", "lstm", "halfspacetrees"}
    for name, factory in BASELINES.items():
        detector = factory(0)
        assert isinstance(detector, NABStreamDetector)
        assert detector.name == name
        assert detector.seed == 0


def test_one_registry_holds_the_baselines_and_the_chain():
    assert set(DETECTORS) == set(BASELINES) | {"surnn"}
    detector = DETECTORS["surnn"](3)
    assert isinstance(detector, NABStreamDetector)
    assert (detector.name, detector.seed) == ("surnn", 3)


def test_bad_input_is_rejected():
    detector = SMALL["iforest"](0)
    with pytest.raises(ValueError, match="1-D"):
        detector.run(np.zeros((10, 2)), 5)
    with pytest.raises(ValueError, match="finite"):
        detector.run(np.array([0.0, np.nan, 1.0]), 2)
    with pytest.raises(ValueError, match="probationary must be in"):
        detector.run(series(), N + 1)
    with pytest.raises(TypeError, match="probationary must be an int"):
        detector.run(series(), 10.0)
    with pytest.raises(ValueError, match="needs probationary >= window"):
        SMALL["lstm"](0).run(series(), 15)


def test_lagged_windows_never_look_ahead():
    windows = lagged_windows(np.array([1.0, 2.0, 3.0, 4.0]), 3)
    assert windows.tolist() == [[1, 1, 1], [1, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_anomaly_likelihood_flags_a_surprising_burst_and_stays_quiet_otherwise():
    rng = np.random.default_rng(0)
    raw = rng.normal(0.0, 1.0, 1000)
    raw[700:720] += 8.0
    scores = anomaly_likelihood(raw, probationary=150)
    assert np.allclose(scores[:150], np.log(0.5 + 1e-10) / np.log(1e-10))  # still learning: probability 0.5
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    red = np.flatnonzero(scores >= 0.5)
    assert 700 <= red[0] <= 703 and scores[red[0]] > 0.75  # the entry into the red zone (q < 1e-8)
    assert (scores[701:720] < 0.5).sum() >= 15  # then mostly yellow: one report per sustained anomaly
    assert np.quantile(scores[150:700], 0.99) < 0.5


def test_anomaly_likelihood_is_causal():
    raw = np.random.default_rng(1).normal(size=600)
    changed = raw.copy()
    changed[401:] = 50.0
    np.testing.assert_array_equal(
        anomaly_likelihood(raw, probationary=100)[:401], anomaly_likelihood(changed, probationary=100)[:401]
    )


def tiny_corpus():
    index = pd.date_range("2020-01-01", periods=N, freq="5min", name="timestamp")
    data_file = NABDataFile("cat/a.csv", pd.Series(series(), index=index, name="value"), ((index[215], index[240]),))
    return NABCorpus({data_file.name: data_file}, {"standard": CostProfile("standard", 1.0, 0.11, 1.0)})


def test_run_corpus_streams_each_file_through_a_fresh_detector():
    corpus = tiny_corpus()
    scores = run_corpus(SMALL["halfspacetrees"], corpus, seed=1)
    assert list(scores) == ["cat/a.csv"]
    assert scores["cat/a.csv"].shape == (N,)


def test_run_corpus_rejects_scores_outside_unit_interval():
    class Broken(NABStreamDetector):
        name = "broken"

        def run(self, values, probationary):
            return values

    with pytest.raises(ValueError, match=r"broken returned scores outside \[0, 1\]"):
        run_corpus(lambda seed: Broken(), tiny_corpus())
