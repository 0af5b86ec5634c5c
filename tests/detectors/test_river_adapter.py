"""RiverDetector: river's AnomalyDetector protocol, pipelines, filters, river's own checks, cloning."""
import functools
import math
import pickle

import numpy as np
import pandas as pd
import pytest

river = pytest.importorskip("river")
from river import anomaly, base, checks, compose, preprocessing  # noqa: E402
from river.checks import common  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from sparsernn.detectors import RiverDetector, SelectiveUpdateDetector, StreamScorer  # noqa: E402

from .conftest import SMALL  # noqa: E402

FEATURES = [f"x{c}" for c in range(6)]


def labelled_stream(n: int, seed: int = 0):
    """(x, y) pairs: six noisy sines as a dict, and every 97th point from 150 on a +5 spike on x2 (y=1)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        x = {f"x{c}": float(np.sin(i / (5 + c)) + 0.05 * rng.standard_normal()) for c in range(6)}
        y = int(i >= 150 and i % 97 == 50)
        if y:
            x["x2"] += 5.0
        yield x, y


@functools.cache
def labelled_points(n: int) -> tuple:
    """:func:`labelled_stream` built once per length (the checks never change a point: river checks that)."""
    return tuple(labelled_stream(n))


def small_detector(**kwargs) -> SelectiveUpdateDetector:
    return SelectiveUpdateDetector(**{**SMALL, "n_steps": 20, **kwargs})


@pytest.fixture(scope="module")
def points() -> list[dict]:
    return [x for x, _ in labelled_stream(400)]


@pytest.fixture(scope="module")
def fitted6(points) -> SelectiveUpdateDetector:
    """Fitted on a DataFrame of the first 200 points (column names x0..x5)."""
    return small_detector(seed=1).fit(pd.DataFrame(points[:200]))


def state(model) -> bytes:
    return pickle.dumps(model)


# --------------------------------------------------------------------------- the protocol
def test_is_a_river_anomaly_detector_that_learns_from_zero(points):
    template = small_detector()
    model = RiverDetector(template, grace_period=50)
    assert isinstance(model, base.AnomalyDetector) and not model._supervised
    assert model.score_one(points[0]) == 0.0  # before any learning: a float, not None
    for i, x in enumerate(points[:50]):
        score = model.score_one(x)
        assert type(score) is float and score == 0.0  # the grace period
        assert model.learn_one(x) is None
        assert (model.scorer_ is None) == (i < 49)  # fitted at the 50th point
    assert model.detector_ is not template and not hasattr(template, "model_")  # the template is left as given
    assert model.detector_.n_channels_ == 6 and model.features_ == FEATURES
    scores = []
    for i, x in enumerate(points[50:]):
        before = state(model) if i % 50 == 0 else None
        score = model.score_one(x)
        assert before is None or state(model) == before  # score_one changes nothing
        assert type(score) is float and math.isfinite(score) and score >= 0
        scores.append(score)
        model.learn_one(x)
    assert model.n_learned_ == len(points)
    spikes = [i - 50 for i, (_, y) in enumerate(labelled_stream(400)) if y and i >= 50]
    assert np.argsort(scores)[-len(spikes):].tolist() == sorted(spikes, key=lambda i: scores[i])


def test_scores_equal_the_stream_scorer_on_the_same_points(points, fitted6):
    model = RiverDetector(fitted6)
    scorer = StreamScorer(fitted6)
    assert model.features_ is None and model.detector_ is fitted6
    for x in points[200:]:
        values = np.array([x[k] for k in FEATURES])
        assert model.score_one(x) == scorer.score_one(values)
        model.learn_one(x)
        scorer.learn_one(values)
    assert model.features_ == FEATURES  # the detector's column names give the channel order


def test_after_the_grace_period_scores_equal_a_stream_scorer_of_the_fitted_copy(points):
    model = RiverDetector(small_detector(), grace_period=80)
    for x in points[:80]:
        model.learn_one(x)
    scorer = StreamScorer(model.detector_)
    grace = np.array([[x[k] for k in FEATURES] for x in points[:80]])
    scorer.process(grace[:, None, :])
    # the copy fitted on the grace period's points is what fitting the template on them gives
    np.testing.assert_array_equal(small_detector().fit(grace).decision_scores_, model.detector_.decision_scores_)
    for x in points[80:200]:
        values = np.array([x[k] for k in FEATURES])
        assert model.score_one(x) == scorer.score_one(values)
        model.learn_one(x)
        scorer.learn_one(values)


def test_one_channel_takes_the_scorer_s_scalar_path(series):
    detector = small_detector(seed=2).fit(series[0][:300])
    model, scorer = RiverDetector(detector), StreamScorer(detector)
    for v in series[0][300:400]:
        assert model.score_one({"value": float(v)}) == scorer.score_one(float(v))
        model.learn_one({"value": float(v)})
        scorer.learn_one(float(v))
    assert model.features_ == ["value"]


# --------------------------------------------------------------------------- features that come and go
def test_key_order_does_not_matter(points):
    a, b = RiverDetector(small_detector(), grace_period=40), RiverDetector(small_detector(), grace_period=40)
    for x in points[:120]:
        shuffled = dict(reversed(list(x.items())))
        assert a.score_one(x) == b.score_one(shuffled)
        a.learn_one(x)
        b.learn_one(shuffled)
    assert a.features_ == b.features_ == FEATURES


def test_missing_features_repeat_the_last_learned_value_and_unknown_ones_are_ignored(points, fitted6):
    model = RiverDetector(fitted6)
    for x in points[200:210]:
        model.learn_one(x)
    last = points[209]
    partial = {k: v for k, v in points[210].items() if k != "x3"}
    filled = {**points[210], "x3": last["x3"]}
    assert model.score_one(partial) == model.score_one(filled)
    assert model.score_one({**partial, "x3": None}) == model.score_one(filled)  # None is missing
    assert model.score_one({**filled, "extra": 1.0}) == model.score_one(filled)
    fresh = RiverDetector(fitted6)  # nothing learned yet: the fitted median
    median = fitted6.center_[FEATURES.index("x3")]
    assert fresh.score_one(partial) == fresh.score_one({**points[210], "x3": float(median)})


@pytest.mark.parametrize("kwargs, x, error, match", [
    (dict(missing="raise"), {k: 0.1 for k in FEATURES[:-1]}, ValueError, "no value for feature 'x5'"),
    (dict(missing="raise"), {**{k: 0.1 for k in FEATURES}, "x0": None}, ValueError, "no value for feature 'x0'"),
    (dict(unknown="raise"), {**{k: 0.1 for k in FEATURES}, "z": 1.0}, ValueError, r"unknown feature\(s\) \['z'\]"),
    ({}, {**{k: 0.1 for k in FEATURES}, "x1": float("nan")}, ValueError, "must be finite"),
    ({}, {**{k: 0.1 for k in FEATURES}, "x1": "3"}, TypeError, "must be a number"),
    ({}, {**{k: 0.1 for k in FEATURES}, "x1": True}, TypeError, "must be a number"),
    ({}, [0.1] * 6, TypeError, "dict of features"),
])
def test_bad_points_are_refused_before_any_state_changes(fitted6, points, kwargs, x, error, match):
    model = RiverDetector(fitted6, **kwargs)
    for p in points[200:205]:
        model.learn_one(p)
    before = state(model)
    with pytest.raises(error, match=match):
        model.score_one(x)
    with pytest.raises(error, match=match):
        model.learn_one(x)
    assert state(model) == before


def test_a_fitted_detector_without_names_needs_features_of_its_width(points):
    unnamed = small_detector().fit(np.array([[x[k] for k in FEATURES] for x in points[:200]]))
    with pytest.raises(ValueError, match="fitted on 6 channel"):
        RiverDetector(unnamed).learn_one({"a": 1.0})
    model = RiverDetector(unnamed, features=tuple(reversed(FEATURES)))  # any order the user fixes
    model.learn_one(points[200])
    assert model.features_ == list(reversed(FEATURES))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(detector="knn"), TypeError, "SelectiveUpdateDetector"), (dict(grace_period=1), ValueError, "grace_period"),
    (dict(missing="zero"), ValueError, "missing"), (dict(unknown="keep"), ValueError, "unknown"),
    (dict(features=("a", "a")), ValueError, "features"), (dict(features="ab"), ValueError, "features"),
])
def test_bad_parameters_fail_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        RiverDetector(**kwargs)


# --------------------------------------------------------------------------- river's composition
def test_in_a_pipeline_it_scores_what_the_scaler_hands_it(points, fitted6):
    pipeline = preprocessing.StandardScaler() | RiverDetector(fitted6)
    scaler, alone = preprocessing.StandardScaler(), RiverDetector(fitted6)
    for x in points[200:300]:
        score = pipeline.score_one(x)
        assert score == alone.score_one(scaler.transform_one(x))
        pipeline.learn_one(x)
        scaler.learn_one(x)
        alone.learn_one(scaler.transform_one(x))
    assert isinstance(pipeline, base.AnomalyDetector)
    clone = pipeline.clone()
    assert clone["RiverDetector"].n_learned_ == 0 and pipeline["RiverDetector"].n_learned_ == 100


@pytest.mark.parametrize("make_filter", [
    lambda det: anomaly.ThresholdFilter(det, threshold=1.0),
    lambda det: anomaly.QuantileFilter(det, q=0.98),
], ids=["threshold", "quantile"])
def test_filters_flag_the_spikes_and_protect_the_detector(make_filter, fitted6):
    model = make_filter(RiverDetector(fitted6))
    flagged, labels, learned = [], [], []
    for i, (x, y) in enumerate(labelled_stream(800)):
        if i < 200:
            continue
        score = model.score_one(x)
        flagged.append(model.classify(score))
        labels.append(y)
        before = model.anomaly_detector.n_learned_
        model.learn_one(x)
        learned.append(model.anomaly_detector.n_learned_ - before)
    flagged, labels, learned = np.array(flagged), np.array(labels), np.array(learned)
    assert flagged[labels == 1].all()  # every spike
    assert (learned == 1 - flagged).all()  # protect_anomaly_detector: a flagged point is not learned
    assert flagged.mean() < 0.1


# --------------------------------------------------------------------------- river's checks
def river_checks(model):
    """river's ``yield_checks(model)``, each dataset check given a local labelled stream instead of the
    ``CreditCard`` download (150 MB, fetched on first use) that river hands anomaly detectors; as in
    river, the memory check gets a stream ten times as long."""
    for check in checks.yield_checks(model):
        if isinstance(check, functools.partial) and "dataset" in check.keywords:
            n = 10_000 if check.func is common.check_bounded_memory_growth else 1_000
            check = functools.update_wrapper(functools.partial(check.func, dataset=list(labelled_points(n))),
                                             check.func)
        yield check


@functools.cache
def fitted_for_checks() -> SelectiveUpdateDetector:
    return small_detector(seed=4).fit(pd.DataFrame([x for x, _ in labelled_stream(200)]))


def make_models():
    """The estimator river's own suite would build (``_unit_test_params``: learns from zero) and one
    holding a fitted detector (the adapter's ``clone()`` deep-copies it, so the cached one stays as fitted)."""
    return {"from_zero": RiverDetector(**next(RiverDetector._unit_test_params())),
            "fitted": RiverDetector(fitted_for_checks())}


CHECK_NAMES = [check.__name__ for check in river_checks(make_models()["from_zero"])]


@pytest.mark.parametrize("kind", ["from_zero", "fitted"])
@pytest.mark.parametrize("name", CHECK_NAMES)
def test_river_check_estimator(kind, name):
    model = make_models()[kind]
    assert name not in model._unit_test_skips()  # nothing is skipped
    (check,) = [c for c in river_checks(model) if c.__name__ == name]
    check(model.clone())


def test_river_checks_cover_the_anomaly_detector_suite():
    assert {"check_roc_auc", "check_emerging_features", "check_disappearing_features", "check_clone_is_independent",
            "check_shuffle_features_no_impact", "check_bounded_memory_growth", "check_pickling",
            "check_predict_one_before_any_learn", "check_no_state_aliasing_with_input"} <= set(CHECK_NAMES)


def test_prequential_roc_auc_is_high():
    model = RiverDetector(**next(RiverDetector._unit_test_params()))
    scores, labels = [], []
    for x, y in labelled_stream(1000):
        scores.append(model.score_one(x))
        model.learn_one(x)
        labels.append(y)
    assert roc_auc_score(labels, scores) > 0.95  # river's check asks >= 0.5


# --------------------------------------------------------------------------- cloning and determinism
def test_clone_is_fresh_and_independent(points, fitted6):
    model = RiverDetector(small_detector(), grace_period=50)
    for x in points[:100]:
        model.learn_one(x)
    clone = model.clone()
    assert clone.n_learned_ == 0 and clone.scorer_ is None and clone.detector is not model.detector
    assert repr(clone) == repr(model)
    snapshot = state(clone)
    for x in points[100:150]:
        model.learn_one(x)
    assert state(clone) == snapshot
    fed = RiverDetector(fitted6)
    for x in points[200:220]:
        fed.learn_one(x)
    copy = fed.clone()  # a fitted detector parameter is deep-copied: same weights, fresh stream
    assert copy.detector is not fitted6 and copy.n_learned_ == 0
    assert copy.score_one(points[220]) == RiverDetector(fitted6).score_one(points[220])
    assert copy.clone(new_params={"grace_period": 99}).grace_period == 99


def test_same_parameters_give_the_same_scores(points):
    runs = []
    for _ in range(2):
        model, scores = RiverDetector(small_detector(seed=7), grace_period=60), []
        for x in points[:150]:
            scores.append(model.score_one(x))
            model.learn_one(x)
        runs.append(scores)
    assert runs[0] == runs[1] and max(runs[0]) > 0


def test_the_docstring_example_runs():
    import doctest

    from sparsernn.detectors.stream import river_adapter

    result = doctest.testmod(river_adapter, extraglobs={"SelectiveUpdateDetector": SelectiveUpdateDetector})
    assert result.attempted >= 5 and result.failed == 0


def test_given_features_the_first_point_learned_needs_them_all(points):
    model = RiverDetector(small_detector(), grace_period=40, features=("x1", "x0"))
    assert model.score_one({"x1": 0.5}) == 0.0  # scoring in the grace period fixes nothing, fills nothing
    with pytest.raises(ValueError, match="no earlier point"):
        model.learn_one({"x1": 0.5})
    assert model.n_learned_ == 0
    model.learn_one(points[0])
    assert model.features_ == ["x1", "x0"]
    model.learn_one({"x1": 0.5})  # now x0 repeats its last value
    assert model.n_learned_ == 2


@pytest.mark.parametrize("kwargs, match", [(dict(normalizer_halflife=0.0), "normalizer_halflife"),
                                           (dict(learn={"every": 0}), "every")])
def test_scorer_settings_are_checked_at_construction_not_after_the_grace_period(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        RiverDetector(**kwargs)
