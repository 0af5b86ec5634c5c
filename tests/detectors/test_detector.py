"""SelectiveUpdateDetector: the PyOD contract, causality, seeding, persistence, quality floor."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from sparsernn.core import step_weights, supports_steppers
from sparsernn.core.infer_numba import NumbaStepper
from sparsernn.core.infer_torch import TorchBlockStepper
from sparsernn.detectors import SelectiveUpdateDetector, load_detector, save_detector
from sparsernn.detectors.forecaster import forecast

from .conftest import SMALL


def test_init_only_stores_arguments_so_clone_works(fitted):
    det = SelectiveUpdateDetector(hidden_size=5, update_gate="rhythm", layer_options={"rhythm_frequencies": 2})
    assert not hasattr(det, "model_")
    twin = clone(det)
    assert twin.get_params() == det.get_params()
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params() and not hasattr(fresh, "model_")


def test_fit_sets_the_pyod_attributes(fitted, series):
    n = len(series[0])
    assert fitted.decision_scores_.shape == (n,)
    assert fitted.labels_.shape == (n,)
    assert np.isclose(fitted.labels_.mean(), fitted.contamination, atol=0.02)
    assert fitted.labels_.sum() == (fitted.decision_scores_ > fitted.threshold_).sum()
    assert len(fitted.training_losses_) == SMALL["n_steps"]


def test_scores_are_causal(fitted, series):
    """Changing the future must leave every past score unchanged, bit for bit."""
    x = series[0]
    cut = 300
    future_changed = x.copy()
    future_changed[cut:] = np.random.default_rng(1).normal(5.0, 3.0, len(x) - cut)
    a = fitted.decision_function(x)
    b = fitted.decision_function(future_changed)
    np.testing.assert_array_equal(a[:cut], b[:cut])
    assert not np.allclose(a[cut:], b[cut:])  # the change is visible from `cut` on


def test_warmup_points_score_zero(fitted, series):
    scores = fitted.decision_function(series[0][:50])
    assert (scores[: SMALL["warmup"]] == 0.0).all() and (scores[SMALL["warmup"]:] > 0).all()


def test_same_seed_same_scores_and_other_seed_differs(series):
    x = series[0][:300]
    a = SelectiveUpdateDetector(**SMALL, seed=7).fit(x).decision_scores_
    b = SelectiveUpdateDetector(**SMALL, seed=7).fit(x).decision_scores_
    c = SelectiveUpdateDetector(**SMALL, seed=8).fit(x).decision_scores_
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_roc_auc_floor_on_injected_spikes():
    from .conftest import synthetic_series

    x, labels = synthetic_series(800, seed=5)
    det = SelectiveUpdateDetector(**{**SMALL, "n_steps": 15}, seed=0).fit(x)
    assert roc_auc_score(labels, det.decision_scores_) > 0.9


def test_pandas_index_is_kept(fitted, series):
    index = pd.date_range("2024-01-01", periods=120, freq="5min")
    s = pd.Series(series[0][:120], index=index, name="cpu")
    scores = fitted.decision_function(s)
    assert isinstance(scores, pd.Series) and scores.index.equals(index)
    np.testing.assert_allclose(scores.to_numpy(), fitted.decision_function(series[0][:120]))
    labels = fitted.predict(s.to_frame())
    assert labels.index.equals(index) and set(np.unique(labels)) <= {0, 1}
    proba = fitted.predict_proba(s)
    assert list(proba.columns) == ["normal", "anomaly"] and proba.index.equals(index)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    unified = fitted.predict_proba(series[0][:120], method="unify")
    assert unified.shape == (120, 2) and (unified >= 0).all() and (unified <= 1).all()


def test_multichannel_dataframe(series):
    frame = pd.DataFrame({"a": series[0][:200], "b": np.cos(np.arange(200) / 7.0)})
    det = SelectiveUpdateDetector(**SMALL).fit(frame)
    assert det.n_channels_ == 2 and det.feature_names_ == ["a", "b"]
    with pytest.raises(ValueError, match="2"):
        det.decision_function(series[0][:50])


@pytest.mark.parametrize("options", [
    dict(cell="gru", update_gate="event"), dict(cell="lstm", update_gate="rhythm"),
    dict(cell="elman", update_gate=None), dict(cell="gru", update_gate="event", density_hh=0.5),
    dict(cell="gru", router_keep=0.5, update_gate=None),
])
def test_fast_path_equals_the_layer(options):
    """Both inference paths (torch fast path, NumPy step) compute what the core layer computes."""
    det = SelectiveUpdateDetector(**{**SMALL, **options, "hidden_size": 13, "n_steps": 1}).fit(np.sin(np.arange(60.)))
    model = det.model_
    assert det.inference_backend_ == ("fused" if "router_keep" in options else "numba")  # core's rule, visible
    u = torch.randn(37, 5, 1, generator=torch.Generator().manual_seed(0))
    state = torch.randn(5, model.layer.state_size, generator=torch.Generator().manual_seed(1))
    if options.get("update_gate") == "rhythm":
        state[:, -1] = torch.tensor([0.0, 3.0, 10.0, 99.0, 1000.0])
    fast = forecast(model, u, state)
    with torch.no_grad():
        slow = model(u, state)
    for name, a, b in zip(("mean", "var", "state"), fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    if not supports_steppers(model.layer):
        return
    block = TorchBlockStepper(step_weights(model.layer), model.readout()).run(u, state)
    for name, a, b in zip(("mean", "var", "state"), block, slow):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"block {n}: {m}")
    stepper, np_state = NumbaStepper(step_weights(model.layer), model.readout()), state.numpy()
    for t in range(u.shape[0]):
        np_state, mean, var = stepper.step(u[t].numpy(), np_state)
        torch.testing.assert_close(torch.from_numpy(mean), slow[0][t], rtol=1e-5, atol=1e-5,
                                   msg=lambda m, t=t: f"numpy mean at step {t}: {m}")
        torch.testing.assert_close(torch.from_numpy(var), slow[1][t], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(np_state), slow[2], rtol=1e-5, atol=1e-5, msg="numpy state")


@pytest.mark.parametrize("options", [dict(cell="gru", update_gate="event"), dict(cell="lstm", update_gate="rhythm")])
def test_step_paths_equal_the_layer_with_two_channels(options):
    """The fused-weight NumPy step and the torch block loop on fresh inputs of two channels and 40 streams."""
    x = np.stack([np.sin(np.arange(80.0)), np.cos(np.arange(80.0) / 3)], axis=1)
    model = SelectiveUpdateDetector(**{**SMALL, **options, "hidden_size": 11, "n_steps": 1}).fit(x).model_
    u = torch.randn(9, 40, 2, generator=torch.Generator().manual_seed(2))
    state = torch.randn(40, model.layer.state_size, generator=torch.Generator().manual_seed(3))
    if options["update_gate"] == "rhythm":
        state[:, -1] = torch.arange(40.0) * 5
    with torch.no_grad():
        mean, var, final = model(u, state)
    for name, a, b in zip(("mean", "var", "state"), TorchBlockStepper(step_weights(model.layer), model.readout()).run(u, state), (mean, var, final)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"block {n}: {m}")
    stepper, np_state = NumbaStepper(step_weights(model.layer), model.readout()), state.numpy()
    for t in range(u.shape[0]):
        np_state, m, v = stepper.step(u[t].numpy(), np_state)
        torch.testing.assert_close(torch.from_numpy(m), mean[t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(v), var[t], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(np_state), final, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(fitted, series, tmp_path):
    save_detector(fitted, tmp_path / "det.pt")
    loaded = load_detector(tmp_path / "det.pt")
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.decision_function(series[0]), fitted.decision_function(series[0]))
    assert loaded.threshold_ == fitted.threshold_


def test_tensorboard_logging(tmp_path, series):
    SelectiveUpdateDetector(**{**SMALL, "n_steps": 2}, log_dir=str(tmp_path)).fit(series[0][:100])
    assert list(tmp_path.glob("events.out.tfevents.*"))


@pytest.mark.parametrize("bad, error, match", [
    (np.array([1.0, np.nan, 2.0] * 10), ValueError, "finite"),
    (np.array([1.0, np.inf, 2.0] * 10), ValueError, "finite"),
    (np.zeros((5, 2, 2)), ValueError, "rank 3"),
    (np.zeros(0), ValueError, "at least"),
    (np.array(["a", "b", "c"], dtype=object), TypeError, "numbers"),
    (pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03"])),
     ValueError, "unsorted"),
    (pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-03"])),
     ValueError, "duplicate"),
    ("not a series", TypeError, "numpy array"),
])
def test_bad_input_is_rejected_clearly(fitted, bad, error, match):
    with pytest.raises(error, match=match):
        fitted.decision_function(bad)


@pytest.mark.parametrize("params, match", [
    (dict(window=1), "window"), (dict(n_steps=-1), "n_steps"), (dict(hidden_size=0), "hidden_size"),
    (dict(learning_rate=0), "learning_rate"), (dict(warmup=0), "warmup"),
    (dict(layer_options={"seed": 1}), "layer_options"), (dict(cell="transformer"), "cell"),
])
def test_bad_hyperparameters_fail_at_fit(params, match, series):
    with pytest.raises((ValueError, TypeError), match=match):
        SelectiveUpdateDetector(**{**SMALL, **params}).fit(series[0][:50])


def test_unfitted_detector_refuses_to_score(series):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SelectiveUpdateDetector().decision_function(series[0])


def test_predict_with_confidence_follows_pyod(fitted, series):
    series = pd.Series(series[0], index=pd.date_range("2024-01-01", periods=len(series[0]), freq="5min"))
    labels, confidence = fitted.predict(series, return_confidence=True)
    pd.testing.assert_series_equal(labels, fitted.predict(series))
    assert isinstance(confidence, pd.Series) and confidence.index.equals(series.index)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    # PyOD's own estimate on the same scores (BaseDetector.predict_confidence on the array).
    expected = super(SelectiveUpdateDetector, fitted).predict_confidence(series.to_numpy())
    np.testing.assert_allclose(confidence.to_numpy(), expected)
    scores = fitted.decision_function(series)
    top = scores.to_numpy().argmax()
    assert labels.iloc[top] == 1 and confidence.iloc[top] > 0.9  # far above the threshold: confident
    probs, confidence_p = fitted.predict_proba(series, return_confidence=True)
    assert list(probs.columns) == ["normal", "anomaly"]
    pd.testing.assert_series_equal(confidence_p, confidence)
