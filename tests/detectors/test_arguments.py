"""Arguments and data: NumPy scalars, seeds, feature names, nullable dtypes, dict keys (issue 10, items 11, 13)."""
import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors import (AnomalyLikelihood, PeakSuppression, SeasonalSurprise, SelectiveUpdateDetector,
                                 SpatialAnomaly, StreamScorer, WindowNovelty)
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL


def test_numpy_scalars_are_accepted_where_numbers_are(series):
    x = series[0][:200]
    params = {**SMALL, "hidden_size": np.int64(8), "n_steps": np.int32(3), "learning_rate": np.float32(3e-3),
              "min_variance": np.float32(1e-3), "seed": np.int64(4), "contamination": np.float32(0.05)}
    numpy_scores = SelectiveUpdateDetector(**params).fit(x).decision_scores_
    plain = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
    plain["learning_rate"], plain["min_variance"] = float(np.float32(3e-3)), float(np.float32(1e-3))
    np.testing.assert_array_equal(numpy_scores, SelectiveUpdateDetector(**plain).fit(x).decision_scores_)


def test_stream_and_wrapper_settings_accept_numpy_scalars(fitted):
    scorer = StreamScorer(fitted, normalizer_halflife=np.float32(20.0), min_scale=np.float64(0.1))
    AnomalyLikelihood(scorer, learning_period=np.int64(10), alarm_threshold=np.float32(0.5))
    SpatialAnomaly(scorer, tolerance=np.float32(0.05))
    SeasonalSurprise(scorer, period=np.int64(12), min_var=np.float32(1e-6), max_surprise=np.float64(10.0))
    PeakSuppression(scorer, period=np.int64(5))
    WindowNovelty(scorer, block=np.int64(2), inner_weight=np.float32(0.5))
    SelectiveUpdateNAB(novelty_window=np.int64(4), novelty_blocks=np.int64(100), suppression=np.float32(0.5))


@pytest.mark.parametrize("seed", [2 ** 70, -1, 2 ** 63])
def test_seeds_that_do_not_fit_are_refused_naming_seed(series, seed):
    with pytest.raises(ValueError, match=r"seed must be an int >= 0 and <= \d+; got"):
        SelectiveUpdateDetector(**{**SMALL, "seed": seed}).fit(series[0][:100])


@pytest.mark.parametrize("name, value, error", [("seed", 1.5, TypeError), ("seed", True, TypeError),
                                                ("contamination", 0.7, ValueError),
                                                ("contamination", "0.1", TypeError),
                                                ("learning_rate", float("nan"), ValueError),
                                                ("device", "no-such-device", ValueError)])
def test_bad_detector_arguments_are_named(series, name, value, error):
    detector = SelectiveUpdateDetector(**SMALL)
    detector.set_params(**{name: value})
    with pytest.raises(error, match=name):
        detector.fit(series[0][:100])


@pytest.mark.parametrize("make, match", [
    (lambda det: StreamScorer(det, normalizer_halflife=np.float32(-1)), "normalizer_halflife"),
    (lambda det: StreamScorer(det, min_scale=float("inf")), "min_scale"),
    (lambda det: AnomalyLikelihood(StreamScorer(det), alarm_threshold=np.float64(1.5)), "alarm_threshold"),
    (lambda det: SpatialAnomaly(StreamScorer(det), tolerance="0.1"), "tolerance"),
    (lambda det: SelectiveUpdateNAB(novelty_window=2.0), "novelty_window"),
    (lambda det: SelectiveUpdateNAB(novelty_memory=0), "novelty_memory"),
    (lambda det: SelectiveUpdateNAB(novelty_memory=1.5), "novelty_memory"),
    (lambda det: SelectiveUpdateNAB(bounded_surprise=1), "bounded_surprise"),
    (lambda det: SelectiveUpdateNAB(router_kep=0.1), "router_kep"),  # built per file: refused up front
])
def test_bad_stream_arguments_are_named(fitted, make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make(fitted)


@pytest.fixture(scope="module")
def frame_detector(series):
    x = series[0][:200]
    frame = pd.DataFrame({"load": x, "temp": x[::-1] * 2.0})
    return SelectiveUpdateDetector(**SMALL).fit(frame), frame


def test_feature_names_are_remembered_and_checked(frame_detector):
    detector, frame = frame_detector
    assert list(detector.feature_names_in_) == ["load", "temp"] and detector.n_features_in_ == 2
    with pytest.raises(ValueError, match=r"unexpected column\(s\) \['LOAD'\] and missing column\(s\) \['load'\]"):
        detector.decision_function(frame.rename(columns={"load": "LOAD"}))
    with pytest.raises(ValueError, match="another order"):
        detector.predict(frame[["temp", "load"]])
    with pytest.raises(ValueError, match="missing"):
        StreamScorer(detector).score_then_learn(frame.rename(columns={"temp": "t"}))
    # sklearn's behaviour: an array after a DataFrame fit is accepted
    np.testing.assert_array_equal(detector.decision_function(frame.to_numpy()), detector.decision_function(frame))


def test_no_feature_names_without_string_columns(series):
    detector = SelectiveUpdateDetector(**SMALL).fit(pd.DataFrame(np.stack([series[0][:100]] * 2, 1)))
    assert not hasattr(detector, "feature_names_in_") and detector.n_features_in_ == 2
    detector.decision_function(pd.DataFrame(np.stack([series[0][:50]] * 2, 1), columns=["a", "b"]))


def test_nullable_dtypes_without_na_are_accepted_and_with_na_refused(frame_detector):
    detector, frame = frame_detector
    nullable = frame.astype({"load": "Float64", "temp": "Float64"})
    np.testing.assert_array_equal(detector.decision_function(nullable), detector.decision_function(frame))
    ints = pd.DataFrame({"load": pd.array(np.arange(60) % 7, dtype="Int64"),
                         "temp": pd.array(np.arange(60) % 5, dtype="Int64")})
    assert np.isfinite(detector.decision_function(ints)).all()
    ints.loc[3, "temp"] = pd.NA
    with pytest.raises(ValueError, match=r"column 'temp' has missing values \(NA\) at position 3"):
        detector.decision_function(ints)
    with pytest.raises(ValueError, match="missing values"):
        SelectiveUpdateDetector(**SMALL).fit(pd.Series(pd.array([1, None, 3] * 10, dtype="Int64")))


def test_dict_points_must_have_the_fitted_keys(frame_detector):
    detector, _ = frame_detector
    stream = StreamScorer(detector)
    stream.learn_one({"temp": 2.0, "load": 1.0})  # key order does not matter: the names do
    assert stream.score_one({"load": 1.0, "temp": 2.0}) == stream.score_one({"temp": 2.0, "load": 1.0})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['LOAD'\] and missing key\(s\) \['load'\]"):
        stream.learn_one({"LOAD": 1.0, "temp": 2.0})
    with pytest.raises(ValueError, match="missing key"):
        stream.score_one({"load": 1.0})
    with pytest.raises(ValueError, match="unknown key"):
        stream.score_one({"load": 1.0, "temp": 2.0, "extra": 3.0})


def test_dict_keys_without_fitted_names_are_fixed_by_the_first_learned_point(fitted):
    stream = StreamScorer(fitted)
    stream.learn_one({"x": 1.0})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['y'\]"):
        stream.learn_one({"y": 1.0})
    stream.learn_one({"x": 2.0})
