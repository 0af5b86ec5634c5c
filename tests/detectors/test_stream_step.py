"""The numba stepper (core NumbaStepper) on a fitted forecaster against the core layer, and the scorer's one-point shortcut."""
import numpy as np
import pytest
import torch

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer
from sparsernn.core.infer_numba import NumbaStepper
from sparsernn.core.inference import NUMBA_MAX_STREAMS
from sparsernn.core.step_weights import step_weights

from .conftest import SMALL
from .test_stream import assert_same_state, snapshot


def _model(cell, gate, channels):
    t = np.arange(80.0)
    x = np.sin(t) if channels == 1 else np.stack([np.sin(t), np.cos(t / 3)], axis=1)
    options = {**SMALL, "cell": cell, "update_gate": gate, "hidden_size": 11, "n_steps": 1}
    if gate == "rhythm":
        options["layer_options"] = {"rhythm_frequencies": 3}
    return SelectiveUpdateDetector(**options).fit(x).model_


def _numba(model):
    return NumbaStepper(step_weights(model.layer), model.readout())


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("gate", [None, "event", "rhythm"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "elman"])
def test_compiled_step_equals_the_layer(cell, gate, channels):
    """run (a block), step (one row of a block) and step_row (in place) all compute the layer's numbers."""
    model = _model(cell, gate, channels)
    T, B = 12, 6
    u = torch.randn(T, B, channels, generator=torch.Generator().manual_seed(0))
    state = torch.randn(B, model.layer.state_size, generator=torch.Generator().manual_seed(1))
    if gate == "rhythm":
        state[:, -1] = torch.tensor([0.0, 1.0, 7.0, 50.0, 999.0, 12345.0])
    with torch.no_grad():
        mean, var, final = model(u, state)
    stepper = _numba(model)
    u_np, state_np = u.numpy(), state.numpy()
    state_copy = state_np.copy()
    got_mean, got_var, got_state = stepper.run(u_np, state_np)
    np.testing.assert_array_equal(state_np, state_copy)  # the input state is not changed
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(got_mean), mean, **close)
    torch.testing.assert_close(torch.from_numpy(got_var), var, **close)
    torch.testing.assert_close(torch.from_numpy(got_state), final, **close)
    # step by step, and in place row by row: the same kernel, so the same bits as run
    s = state_np
    rows, row_mean, row_var = state_np.copy(), np.zeros((B, channels), np.float32), np.ones((B, channels), np.float32)
    for t in range(T):
        s, m, v = stepper.step(u_np[t], s)
        np.testing.assert_array_equal(m, got_mean[t])
        np.testing.assert_array_equal(v, got_var[t])
        for b in range(B):
            stepper.step_row(np.ascontiguousarray(u_np[t, b]), b, rows, row_mean, row_var)
        np.testing.assert_array_equal(row_mean, got_mean[t])
        np.testing.assert_array_equal(row_var, got_var[t])
    np.testing.assert_array_equal(s, got_state)
    np.testing.assert_array_equal(rows, got_state)


def test_compiled_step_checks_shapes():
    stepper = _numba(_model("gru", "event", 1))
    with pytest.raises(ValueError, match="u must have shape"):
        stepper.run(np.zeros((3, 2, 2), np.float32), np.zeros((2, stepper.state_size), np.float32))
    with pytest.raises(ValueError, match="state must have shape"):
        stepper.run(np.zeros((3, 2, 1), np.float32), np.zeros((3, stepper.state_size), np.float32))


@pytest.mark.parametrize("halflife", [None, 20.0])
def test_one_point_shortcut_equals_the_checked_path_exactly(fitted, series, halflife):
    """Python floats (the shortcut), one-element lists (the checked path) and process() agree bit for bit."""
    x = series[0][:80]
    fast, checked = StreamScorer(fitted, normalizer_halflife=halflife), StreamScorer(fitted, normalizer_halflife=halflife)
    fast_scores, checked_scores = [], []
    for v in x.tolist():
        fast_scores.append(fast.score_one(v))
        fast.learn_one(v)
        checked_scores.append(checked.score_one([v]))
        checked.learn_one([v])
    assert all(type(s) is float for s in fast_scores)
    np.testing.assert_array_equal(fast_scores, checked_scores)
    assert_same_state(snapshot(fast), snapshot(checked))
    block = StreamScorer(fitted, normalizer_halflife=halflife)
    np.testing.assert_array_equal(block.process(x[:, None])[:, 0], fast_scores)
    assert_same_state(snapshot(fast), snapshot(block))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_rejected_float_on_a_known_stream_leaves_it_unchanged(fitted, series, bad):
    for stream in (StreamScorer(fitted, normalizer_halflife=30.0), AnomalyLikelihood(StreamScorer(fitted))):
        for v in series[0][:30].tolist():
            stream.learn_one(v, stream="a")
        before = snapshot(stream)
        with pytest.raises(ValueError, match="finite"):
            stream.learn_one(bad, stream="a")
        with pytest.raises(ValueError, match="finite"):
            stream.score_one(bad, stream="a")
        assert_same_state(before, snapshot(stream))


def test_blocks_on_either_side_of_the_step_switch_agree(fitted, series):
    """Blocks of NUMBA_MAX_STREAMS streams (compiled step) and one more (torch) give the same numbers."""
    x = series[0][:60]
    block = np.stack([x + 0.01 * k for k in range(NUMBA_MAX_STREAMS + 1)], axis=1)
    small_scorer, large_scorer = StreamScorer(fitted), StreamScorer(fitted)
    small = small_scorer.process(block[:, :NUMBA_MAX_STREAMS], list(range(NUMBA_MAX_STREAMS)))
    large = large_scorer.process(block, list(range(NUMBA_MAX_STREAMS + 1)))
    assert (small_scorer.inference.last_backend, large_scorer.inference.last_backend) == ("numba", "torch")
    np.testing.assert_allclose(small, large[:, :NUMBA_MAX_STREAMS], rtol=1e-5, atol=1e-6)
