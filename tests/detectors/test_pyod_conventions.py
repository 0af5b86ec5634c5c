"""PyOD 3's conventions beyond fit / decision_function: the inputs its time-series detectors take,
predict_confidence / return_confidence / predict_with_rejection, and listing in PyOD's knowledge base."""
import array
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pyod.models._ts_utils import validate_ts_input
from pyod.models.base import BaseDetector
from scipy.stats import binom

from sparsernn.detectors import SelectiveUpdateDetector
from sparsernn.detectors.pyod_registry import PYOD_NAME, register_with_pyod, write_pyod_knowledge

from .conftest import SMALL

N = 240


def one_channel() -> np.ndarray:
    rng = np.random.default_rng(5)
    x = np.sin(np.arange(N) / 6.0) + 0.05 * rng.standard_normal(N)
    x[180] += 3.0
    return x


def two_channels() -> np.ndarray:
    return np.column_stack([one_channel(), np.cos(np.arange(N) / 9.0)])


ONE_CHANNEL_INPUTS = {  # what PyOD's time-series detectors take (validate_ts_input), one channel
    "1-D array": lambda x: x,
    "(n, 1) array": lambda x: x[:, None],
    "float32 array": lambda x: x.astype(np.float32),
    "list": lambda x: x.tolist(),
    "list of [v]": lambda x: [[v] for v in x],
    "tuple": lambda x: tuple(x),
    "object array": lambda x: np.array(x.tolist(), dtype=object),
    "array.array": lambda x: array.array("d", x),
    "torch tensor": lambda x: torch.from_numpy(x),
    "pandas Index": lambda x: pd.Index(x),
    "Series": lambda x: pd.Series(x),
    "Series on a DatetimeIndex": lambda x: pd.Series(x, index=pd.date_range("2024-01-01", periods=len(x), freq="h")),
    "object Series": lambda x: pd.Series(x.tolist(), dtype=object),
    "DataFrame": lambda x: pd.DataFrame({"value": x}),
}
TWO_CHANNEL_INPUTS = {
    "2-D array": lambda x: x,
    "list of lists": lambda x: x.tolist(),
    "torch tensor": lambda x: torch.from_numpy(x),
    "DataFrame": lambda x: pd.DataFrame(x, columns=["a", "b"]),
}


def detector() -> SelectiveUpdateDetector:
    return SelectiveUpdateDetector(**SMALL, seed=11)


@pytest.fixture(scope="module")
def reference() -> dict:
    """Detectors fitted on the plain float64 arrays PyOD's ``validate_ts_input`` makes."""
    return {1: detector().fit(validate_ts_input(one_channel())), 2: detector().fit(two_channels())}


@pytest.mark.parametrize("channels, make", [(1, m) for m in ONE_CHANNEL_INPUTS.values()]
                         + [(2, m) for m in TWO_CHANNEL_INPUTS.values()],
                         ids=[f"1ch {k}" for k in ONE_CHANNEL_INPUTS] + [f"2ch {k}" for k in TWO_CHANNEL_INPUTS])
def test_fit_and_decision_function_take_what_pyod_time_series_detectors_take(channels, make, reference):
    base = one_channel() if channels == 1 else two_channels()
    X = make(base)
    as_pyod = validate_ts_input(X)  # PyOD takes it; this is the array it would work on
    assert as_pyod.shape == (N, channels)
    expected = reference[channels] if np.array_equal(as_pyod, base.reshape(N, -1)) else detector().fit(as_pyod)
    fitted = detector().fit(X)
    np.testing.assert_allclose(fitted.decision_scores_, expected.decision_scores_, rtol=1e-6)
    scores = fitted.decision_function(X)
    np.testing.assert_allclose(np.asarray(scores), expected.decision_function(as_pyod), rtol=1e-6)
    assert isinstance(scores, pd.Series) == isinstance(X, (pd.Series, pd.DataFrame))  # pandas in, pandas out
    assert np.asarray(fitted.predict(X)).shape == (N,)


def test_range_is_read_like_numpy_reads_it(reference):
    fitted = detector().fit(range(N))
    np.testing.assert_array_equal(fitted.decision_function(range(N)), fitted.decision_function(np.arange(N)))


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((N, 2, 2)), ValueError, "rank 3"),  # PyOD refuses it too
    ([str(v) for v in one_channel()], TypeError, "numbers"),  # PyOD parses numeric strings; refused here
    ([None] + one_channel().tolist()[1:], TypeError, "None"),
    (np.array([1.0, "a"] * 20, dtype=object), TypeError, "'a'"),
    (torch.ones(N, requires_grad=True), TypeError, "could not be read"),
    ({"a": 1.0}, TypeError, "array-like"),
    ("1.0 2.0", TypeError, "array-like"),
])
def test_inputs_that_are_not_series_of_numbers_are_refused(bad, error, match, reference):
    with pytest.raises(error, match=match):
        reference[1].decision_function(bad)
    with pytest.raises(error, match=match):
        detector().fit(bad)


def test_numeric_strings_are_the_one_input_pyod_takes_and_we_refuse():
    strings = [str(v) for v in one_channel()]
    assert validate_ts_input(strings).dtype == np.float64  # PyOD parses them
    with pytest.raises(TypeError):
        detector().fit(strings)


# --------------------------------------------------------------------------- confidence
def perini_confidence(train_scores: np.ndarray, scores: np.ndarray, threshold: float,
                      contamination: float) -> np.ndarray:
    """PyOD's predict_confidence (Perini et al., 2020), written out: the posterior outlier probability
    of each score among the n training scores, and the binomial confidence in its label."""
    n = len(train_scores)
    p = (1 + (train_scores[None, :] <= scores[:, None]).sum(axis=1)) / (2 + n)
    outlier = 1 - binom.cdf(n - int(n * contamination), n, p)
    return np.where(scores > threshold, outlier, 1 - outlier)


@pytest.mark.parametrize("kind", ["1-D array", "list", "Series on a DatetimeIndex", "DataFrame"])
def test_predict_confidence_and_return_confidence_follow_pyod(kind, reference):
    fitted = reference[1]
    X = ONE_CHANNEL_INPUTS[kind](one_channel())
    confidence = fitted.predict_confidence(X)
    expected = perini_confidence(fitted.decision_scores_, np.asarray(fitted.decision_function(X)), fitted.threshold_,
                                 fitted.contamination)
    np.testing.assert_allclose(np.asarray(confidence), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(confidence), BaseDetector.predict_confidence(fitted, validate_ts_input(X)))
    labels, with_confidence = fitted.predict(X, return_confidence=True)
    np.testing.assert_array_equal(np.asarray(labels), np.asarray(fitted.predict(X)))
    np.testing.assert_array_equal(np.asarray(with_confidence), np.asarray(confidence))
    probs, proba_confidence = fitted.predict_proba(X, return_confidence=True)
    np.testing.assert_array_equal(np.asarray(proba_confidence), np.asarray(confidence))
    assert np.asarray(probs).shape == (N, 2)
    if isinstance(X, (pd.Series, pd.DataFrame)):
        assert confidence.index.equals(X.index) and with_confidence.index.equals(X.index)
    top = int(np.argmax(np.asarray(fitted.decision_function(X))))
    assert np.asarray(labels)[top] == 1 and np.asarray(confidence)[top] > 0.9


@pytest.mark.parametrize("kind", ["1-D array", "Series on a DatetimeIndex"])
def test_predict_with_rejection_follows_pyod(kind, reference):
    fitted = reference[1]
    X = ONE_CHANNEL_INPUTS[kind](one_channel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PyOD warns that its default c_r=-1 is replaced
        warnings.simplefilter("ignore", RuntimeWarning)  # and takes a sqrt of a negative in its cost bound
        labels, stats = fitted.predict_with_rejection(X, T=2, return_stats=True)
        expected, expected_stats = BaseDetector.predict_with_rejection(fitted, validate_ts_input(X), T=2,
                                                                       return_stats=True)
    np.testing.assert_array_equal(np.asarray(labels), expected)
    np.testing.assert_allclose(stats, expected_stats)
    assert set(np.unique(expected)) <= {-2, 0, 1} and (expected == -2).any()  # T=2 rejects some
    if isinstance(X, pd.Series):
        assert labels.index.equals(X.index)


# --------------------------------------------------------------------------- PyOD's knowledge base
def test_registered_in_an_engine_it_is_listed_planned_built_and_run():
    engine = register_with_pyod()
    assert PYOD_NAME in [d["name"] for d in engine.list_detectors(data_type="time_series")]
    assert engine.explain_detector(PYOD_NAME)["class_path"] == "sparsernn.detectors.SelectiveUpdateDetector"
    plan = engine.make_plan([PYOD_NAME], params=[{**SMALL, "seed": 11}])
    assert plan["params"]["contamination"] == 0.1  # the entry's default, as PyOD fills it
    built = engine.build_detector(plan)
    assert isinstance(built, SelectiveUpdateDetector) and not hasattr(built, "model_")
    result = engine.run_detection(one_channel(), plan)
    np.testing.assert_array_equal(result["scores_train"], detector().fit(one_channel()).decision_scores_)
    assert result["n_anomalies"] == int(result["labels_train"].sum()) > 0


def test_a_fresh_engine_does_not_know_it_and_a_written_knowledge_dir_does(tmp_path):
    from pyod.utils.ad_engine import ADEngine

    with pytest.raises(ValueError, match="Unknown detector"):
        ADEngine().explain_detector(PYOD_NAME)  # registering one engine changes no other
    directory = write_pyod_knowledge(tmp_path / "kb")
    engine = ADEngine(knowledge_dir=str(directory))
    assert engine.explain_detector(PYOD_NAME)["status"] == "shipped"
    assert len(engine.kb.algorithms) == len(ADEngine().kb.algorithms) + 1  # PyOD's own entries kept
    assert engine.get_benchmarks("all") == ADEngine().get_benchmarks("all")
    assert json.loads((directory / "algorithms.json").read_text())[PYOD_NAME]["data_types"] == ["time_series"]


def test_the_examples_in_docs_river_run(tmp_path, monkeypatch, capsys):
    import re

    from ..conftest import REPO_ROOT

    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "docs" / "river.md").read_text(), re.DOTALL)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/river.md", "exec"), {})
    assert capsys.readouterr().out.split() == ["[300]", "1", "1.0", "True", "400"]
