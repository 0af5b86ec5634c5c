"""Rhythm neurons at the series' seasons: periods from the sampling, the rhythm's clock in training,
batch and streaming, and persistence of a detector and a NAB chain that use them."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer, load_detector, load_stream, save_detector
from sparsernn.detectors.nab import SelectiveUpdateNAB
from sparsernn.detectors.stream import season_periods
from sparsernn.detectors.forecaster import surprise
from sparsernn.detectors.training import window_state

from .conftest import SMALL

FIXED = {"rhythm_periods": [24.0, 168.0], "rhythm_learn_periods": False}


def rhythm_detector(**kwargs):
    return SelectiveUpdateDetector(**{**SMALL, "update_gate": "rhythm", "layer_options": FIXED, "seed": 1, **kwargs})


def test_season_periods_from_the_median_step():
    five_min = pd.date_range("2024-01-01", periods=50, freq="5min")
    assert season_periods(five_min) == (288.0, 2016.0)
    assert season_periods(five_min, ["12h", "3.5D"]) == (144.0, 1008.0)
    hourly = pd.date_range("2024-01-01", periods=3, freq="h")  # fewer rows than a season: allowed
    assert season_periods(hourly.append(pd.DatetimeIndex(["2024-01-01 03:00"]))) == (24.0, 168.0)
    irregular = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 00:10", "2024-01-01 00:20", "2024-01-01 05:00"])
    assert season_periods(irregular, ["1D"]) == (144.0,)  # the median step, not the mean


@pytest.mark.parametrize("stamps, seasons, error, match", [
    (pd.date_range("2024-01-01", periods=9, freq="D"), ["1D"], ValueError, "at least 2 rows"),
    (pd.date_range("2024-01-01", periods=1, freq="h"), ["1D"], ValueError, "at least 2 timestamps"),
    (pd.date_range("2024-01-01", periods=5, freq="h"), "1D", TypeError, "sequence"),
    (pd.date_range("2024-01-01", periods=5, freq="h"), [], ValueError, "at least one"),
    (pd.date_range("2024-01-01", periods=5, freq="h"), ["a day"], ValueError, "Timedelta"),
])
def test_season_periods_refuses_what_it_cannot_turn_into_periods(stamps, seasons, error, match):
    with pytest.raises(error, match=match):
        season_periods(stamps, seasons)


def test_training_windows_start_at_their_rows_time_index():
    det = rhythm_detector()
    model = det._build_model(1)
    u = torch.zeros(100, 1)
    starts = torch.tensor([0, 17, 60])
    state = window_state(model, starts, u)
    assert state[:, -1].tolist() == [0.0, 17.0, 60.0] and not state[:, :-1].any()
    event = SelectiveUpdateDetector(**SMALL)._build_model(1)
    assert window_state(event, starts, u) is None  # no clock: zeros, as before


def test_fixed_periods_survive_fit_and_learnt_ones_move(series):
    x = series[0][:300]
    fixed = rhythm_detector().fit(x)
    torch.testing.assert_close(2 * math.pi / fixed.model_.layer.gate.omega.double(),
                               torch.tensor([24.0, 168.0], dtype=torch.float64), rtol=1e-6, atol=0)
    learnt = rhythm_detector(layer_options={"rhythm_periods": [24.0, 168.0]}).fit(x)
    assert not torch.allclose(2 * math.pi / learnt.model_.layer.gate.omega.double(),
                              torch.tensor([24.0, 168.0], dtype=torch.float64), rtol=1e-3)


def test_the_stream_equals_the_batch_and_its_clock_is_the_row(series):
    x = series[0]
    det = rhythm_detector().fit(x[:200])
    batch = det.decision_function(x)
    stream = StreamScorer(det)
    parts = np.array_split(x, 5)
    scores = np.concatenate([stream.process(part[:, None])[:, 0] for part in parts])
    np.testing.assert_allclose(scores, batch, rtol=1e-5, atol=1e-6)
    assert stream.state[0, -1] == len(x)  # the rhythm's time index after the series: its row count
    u = torch.from_numpy(det.normalize(x[:, None]).astype(np.float32))[:, None]
    with torch.no_grad():
        mean, var, _ = det.model_(u)  # the layer itself from a fresh state: time index = row
    expected = surprise(u[1:], mean[:-1], var[:-1])[:, 0].double().numpy()
    np.testing.assert_allclose(batch[SMALL["warmup"]:], expected[SMALL["warmup"] - 1:], rtol=1e-4, atol=1e-5)


def test_a_saved_detector_and_a_resumed_stream_keep_the_periods(series, tmp_path):
    x = series[0]
    det = rhythm_detector().fit(x[:200])
    save_detector(det, tmp_path / "det.pt")
    loaded = load_detector(tmp_path / "det.pt")
    assert loaded.model_.layer.rhythm_periods == (24.0, 168.0)
    assert not loaded.model_.layer.rhythm_learn_periods
    np.testing.assert_array_equal(loaded.decision_function(x), det.decision_function(x))

    whole = StreamScorer(det).process(x[:, None])[:, 0]
    first = StreamScorer(det)
    head = first.process(x[:333, None])[:, 0]
    first.save(tmp_path / "stream.pt")
    resumed = load_stream(tmp_path / "stream.pt")
    tail = resumed.process(x[333:, None])[:, 0]
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)


def nab(**kwargs):
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    params.update(update_gate="rhythm", rhythm_seasons=["1D", "12h"], layer_options={"rhythm_learn_periods": False})
    return SelectiveUpdateNAB(seed=0, **{**params, **kwargs})


def test_the_nab_chain_takes_the_periods_from_each_files_sampling(series, tmp_path):
    x = series[0]
    for freq, day in (("h", 24.0), ("30min", 48.0)):
        stamps = pd.date_range("2024-01-01", periods=len(x), freq=freq)
        chain = nab().pipeline(x, probationary=100, timestamps=stamps)
        scorer = chain
        while not isinstance(scorer, StreamScorer):
            scorer = scorer.inner
        layer = scorer.detector.model_.layer
        assert layer.rhythm_periods == (day, day / 2)
        torch.testing.assert_close(2 * math.pi / layer.gate.omega.double(),
                                   torch.tensor([day, day / 2], dtype=torch.float64), rtol=1e-6, atol=0)
    chain = nab().pipeline(x, probationary=100, timestamps=stamps)
    uninterrupted = nab().pipeline(x, probationary=100, timestamps=stamps).process(x[:, None])[:, 0]
    head = chain.process(x[:250, None])[:, 0]
    chain.save(tmp_path / "chain.pt")
    tail = load_stream(tmp_path / "chain.pt").process(x[250:, None])[:, 0]
    np.testing.assert_array_equal(np.concatenate([head, tail]), uninterrupted)
    np.testing.assert_array_equal(uninterrupted, nab().run(x, 100, stamps))


def test_the_nab_chain_refuses_seasons_it_cannot_use(series):
    x = series[0]
    with pytest.raises(ValueError, match="needs update_gate='rhythm'"):
        SelectiveUpdateNAB(rhythm_seasons=["1D"])
    with pytest.raises(ValueError, match="both set"):
        nab(layer_options={"rhythm_periods": [24.0]})
    with pytest.raises(ValueError, match="Timedelta"):
        nab(rhythm_seasons=["daily"])
    with pytest.raises(ValueError, match="timestamps"):
        nab(seasonal=False).pipeline(x, probationary=100)
    daily = pd.date_range("2024-01-01", periods=len(x), freq="D")
    with pytest.raises(ValueError, match="at least 2 rows"):
        nab(seasonal=False).pipeline(x, probationary=100, timestamps=daily)
