"""Property-based robustness of the detector, the stream scorer and every wrapper (issue 10, items 2, 3).

Random sequences of calls, good, bad and extreme, go to two identical streams A and B: every
call goes to A; a call A rejects must raise a clear ``ValueError`` / ``TypeError`` and leave
A's whole state (every array of the scorer and of each wrapper, the stream ids, the dict keys)
exactly as it was; a call A accepts must give a finite result and is then made on B too, and
A and B must agree, so a rejected call is as if it never happened.
"""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsernn.detectors import (AnomalyLikelihood, PeakSuppression, SeasonalSurprise, SelectiveUpdateDetector,
                                 SpatialAnomaly, StreamScorer, WindowNovelty)
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL

EXTREME = [0.0, -0.5, 3.0, 1000.0, -1e4, 1e30, -1e30, 1e39, -1e308, 1.7e308, 5e-324]
BAD = [float("nan"), float("inf"), -float("inf"), "1.0", None, [1.0, 2.0], [], {"q": 1.0}, True, 1 + 2j,
       np.array([[1.0]]), object()]
IDS = ["a", "b", 0, 7, np.int64(7)]
BAD_IDS = [True, 1.5, None, ("t",), b"a"]

values = st.one_of(st.sampled_from(EXTREME), st.floats(-1e6, 1e6, allow_nan=False),
                   st.floats(allow_nan=False, allow_infinity=False))
points = st.one_of(values, values, st.sampled_from(BAD))
ids = st.one_of(st.sampled_from(IDS), st.sampled_from(IDS), st.sampled_from(BAD_IDS))
stamps = st.one_of(st.none(), st.none(), st.integers(-2 ** 64, 2 ** 64), st.sampled_from(
    ["2024-01-01", "2030-06-01 12:00", "not a time", 3.5, pd.Timestamp("2025-01-01")]))


@st.composite
def calls(draw):
    """(method name, args, kwargs) of one call of the stream protocol."""
    kind = draw(st.sampled_from(["score_one", "learn_one", "score_many", "learn_many", "process", "score"]))
    if kind in ("score_one", "learn_one"):
        return kind, (draw(points),), {"timestamp": draw(stamps), "stream": draw(ids)}
    n = draw(st.integers(1, 3))
    streams = draw(st.lists(ids, min_size=1, max_size=3))
    if kind in ("score_many", "learn_many"):
        X = draw(st.one_of(st.lists(values, min_size=n, max_size=n), st.lists(points, min_size=n, max_size=n)))
        return kind, (X,), {"streams": streams}
    T = draw(st.integers(1, 4))
    block = draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=T, max_size=T))
    if draw(st.booleans()):
        block[0][0] = draw(points)
    if kind == "process":
        return kind, (block,), {"streams": streams}
    return kind, (np.asarray(block, dtype=object)[:, 0],), {"stream": streams[0]}


def snapshot(stream) -> dict:
    """Every piece of state of a chain: the scorer's arrays, ids and dict keys, each wrapper's arrays."""
    chain = []
    while hasattr(stream, "inner"):
        chain.append(stream)
        stream = stream.inner
    state = {f"scorer.{a}": getattr(stream, a).copy() for a in StreamScorer.STATE}
    state["ids"], state["keys"] = list(stream.stream_ids), stream.dict_keys
    for i, wrapper in enumerate(chain):
        state.update({f"{i}.{a}": np.array(getattr(wrapper, a), copy=True) for a in wrapper.STATE})
    return state


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
        else:
            assert a[key] == b[key], key


def call(stream, method, args, kwargs):
    try:
        return getattr(stream, method)(*args, **kwargs), None
    except (ValueError, TypeError) as error:
        assert str(error), "an error must say what is wrong"
        return None, error


@pytest.fixture(scope="module")
def detector():
    return SelectiveUpdateDetector(**SMALL, seed=1).fit(np.sin(np.arange(300) / 4.0))


def nab_chain():
    x = np.sin(np.arange(120) / 4.0)
    nab = SelectiveUpdateNAB(seed=0, suppression=0.5, normalizer_halflife=20.0,
                             **{k: v for k, v in SMALL.items() if k != "progress"})
    return nab.pipeline(x, 60, pd.date_range("2024-01-01", periods=120, freq="h"))


CHAINS = {
    "scorer": lambda det: StreamScorer(det),
    "scorer-online": lambda det: StreamScorer(det, normalizer_halflife=10.0),
    "likelihood": lambda det: AnomalyLikelihood(StreamScorer(det, normalizer_halflife=10.0), learning_period=3,
                                                estimation_samples=3),
    "seasonal": lambda det: SeasonalSurprise(StreamScorer(det), period=3),
    "seasonal-from-timestamps": lambda det: SeasonalSurprise(StreamScorer(det)),
    "novelty": lambda det: WindowNovelty(AnomalyLikelihood(StreamScorer(det), learning_period=2,
                                                           estimation_samples=2),
                                         block=1, window=2, learning_period=2, estimation_samples=2),
    "suppression": lambda det: PeakSuppression(StreamScorer(det), period=3),
    "spatial": lambda det: SpatialAnomaly(StreamScorer(det, normalizer_halflife=5.0)),
    "nab-chain": lambda det: nab_chain(),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_rejected_calls_change_nothing_and_accepted_ones_are_finite(detector, name):
    make = CHAINS[name]
    twin_a, twin_b = make(detector), make(detector)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(calls(), min_size=1, max_size=6))
    def run(sequence):
        for method, args, kwargs in sequence:
            if not hasattr(twin_a, method):  # score(chunk) is only on the scorer and some wrappers
                continue
            before = snapshot(twin_a)
            result, error = call(twin_a, method, args, kwargs)
            if error is not None:
                assert_same(snapshot(twin_a), before)
                continue
            if result is not None:  # score_* and process return scores; learn_* return None
                assert np.isfinite(np.asarray(result, dtype=float)).all(), (method, args, kwargs, result)
            other, other_error = call(twin_b, method, args, kwargs)
            assert other_error is None
            np.testing.assert_array_equal(np.asarray(result, dtype=float), np.asarray(other, dtype=float))
            after = snapshot(twin_a)
            assert_same(after, snapshot(twin_b))
            for key in ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var"):
                assert np.isfinite(after[f"scorer.{key}"]).all(), (key, method, args, kwargs)

    run()


def test_scoring_a_new_stream_does_not_register_it(detector):
    for name, make in CHAINS.items():
        stream = make(detector)
        if name == "seasonal-from-timestamps":
            continue
        stream.learn_one(0.5, stream="known")
        before = snapshot(stream)
        first = stream.score_one(0.25, stream="new")
        many = stream.score_many([0.25, 0.5], ["new", "known"])
        assert_same(snapshot(stream), before)
        stream.learn_one(0.1, stream="other")
        assert stream.score_one(0.25, stream="new") == first == many[0], name  # the initial state, every time


def test_a_repeated_id_leaves_no_half_registered_stream(detector):
    scorer = StreamScorer(detector)
    with pytest.raises(ValueError, match="repeat"):
        scorer.learn_many([1.0, 2.0], streams=["b", "b"])
    assert scorer.stream_ids == [] and len(scorer.state) == 0
    scorer.learn_one(1.0, stream="b")
    assert scorer.stream_ids == ["b"] and np.isfinite(scorer.score_one(1.0, stream="b"))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(values, values, st.sampled_from(BAD[:3])), min_size=1, max_size=40))
def test_detector_scores_are_finite_or_the_input_is_rejected(detector, xs):
    before = detector.decision_scores_.copy(), detector.threshold_
    try:
        scores = detector.decision_function(np.asarray(xs, dtype=float))
    except ValueError as error:
        assert "finite" in str(error)
        assert not np.isfinite(np.asarray(xs, dtype=float)).all()
    else:
        assert np.isfinite(scores).all()
        labels = detector.predict(np.asarray(xs, dtype=float))
        assert set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(detector.decision_scores_, before[0])
    assert detector.threshold_ == before[1]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(values, min_size=8, max_size=40))
def test_fitting_on_extreme_finite_data_gives_finite_scores(xs):
    detector = SelectiveUpdateDetector(**{**SMALL, "n_steps": 1, "hidden_size": 4}).fit(np.asarray(xs))
    assert np.isfinite(detector.decision_scores_).all() and np.isfinite(detector.threshold_)
    assert np.isfinite(detector.decision_function(np.asarray(xs[::-1]))).all()


def test_complex_blocks_are_refused_not_cast(detector):
    scorer = StreamScorer(detector)
    with pytest.raises(TypeError, match="real numbers"):
        scorer.process(np.array([[1 + 2j]]))
    assert scorer.stream_ids == []
