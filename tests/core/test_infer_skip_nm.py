"""The neuron-major skipping kernel (core/infer_skip_nm.py) against the layer followed by its read-out, and its
float32 nonlinearities against float64: every cell and gate, odd sizes on both of its paths (narrow: gathered
columns; wide: dot products), rates 0.05-1.0, streams at different time indices, extreme inputs; closed
neurons keep their state bit for bit."""
import numpy as np
import pytest
import torch

from sparsernn.core import step_weights
from sparsernn.core import infer_skip_nm
from sparsernn.core.infer_numba import NumbaStepper
from sparsernn.core.infer_skip_nm import sigmoid_f32, tanh_f32

from .test_inference_steppers import RATES, _check, _expected, _inputs, _layer, _preactivation, _readout

CELLS = ["gru", "lstm", "elman"]
MANY = infer_skip_nm.MIN_STREAMS + 5  # odd, and past the per-stream kernel's blocks


def _nonlinearities(x):
    out_t, out_s = np.empty_like(x), np.empty_like(x)
    for i in range(x.shape[0]):
        out_t[i], out_s[i] = tanh_f32(x[i]), sigmoid_f32(x[i])
    return out_t, out_s


def test_float32_tanh_and_sigmoid_are_within_a_few_ulp():
    """The rational tanh is within 3e-7 of float64's (a few float32 ulp of values near 1), the sigmoid built on
    it within 3e-7 absolute, over [-40, 40] and at the extremes; NaN stays NaN and +-inf give the limits."""
    x = np.concatenate([np.linspace(-40, 40, 200_001), [0.0, 1e-30, -1e-30, 3e38, -3e38, np.inf, -np.inf]])
    x = x.astype(np.float32)
    t, s = _nonlinearities(x)
    x64 = x.astype(np.float64)
    assert np.abs(t - np.tanh(x64)).max() < 3e-7
    assert np.abs(s - 0.5 * (1 + np.tanh(x64 / 2))).max() < 3e-7
    small = np.abs(x64) < 1e-3
    assert np.abs(t[small] - np.tanh(x64[small])).max() < 1e-9  # relative accuracy near 0
    t_nan, s_nan = _nonlinearities(np.array([np.nan], np.float32))
    assert np.isnan(t_nan).all() and np.isnan(s_nan).all()


def _run_many(layer, readout, u, state):
    stepper = NumbaStepper(step_weights(layer), readout)
    out = stepper.run(u.numpy(), state.numpy())
    assert stepper.last_kernel == "neuron-major"
    return stepper, out


@pytest.mark.parametrize("hidden", [37, 70], ids=["narrow", "wide"])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("cell", CELLS)
def test_neuron_major_kernel_equals_the_layer_and_keeps_closed_neurons_exactly(cell, gate, rate, hidden):
    """At update rates 0.05-1.0 and odd sizes (I=3, H=37 or 70, T=9, B=37), the neuron-major kernel gives the
    layer's numbers (streams at different time indices under the rhythm gate), and a neuron closed at a step
    keeps h (and c) bit for bit."""
    assert (3 + hidden + 1 > infer_skip_nm.NARROW_MAX_WIDTH) == (hidden == 70)
    layer = _layer(cell, gate, 3, hidden=hidden, initial_update_rate=rate)
    readout = _readout(layer)
    u, state = _inputs(layer, 9, MANY, seed=7)
    if gate == "rhythm":  # past the first 2000 indices; some streams share an index, as streams in step do
        state[:, -1] += 5000
        state[10:20, -1] = 6000.0
    expected = _expected(layer, readout, u, state)
    stepper, got = _run_many(layer, readout, u, state)
    _check("neuron-major", got, expected, 1e-5)
    # one step: closed neurons keep their state exactly (pairs within 1e-4 of the threshold left out)
    a = _preactivation(stepper_weights := step_weights(layer), u[0], state)
    new_state = stepper.run(u[:1].numpy(), state.numpy())[2]
    H = stepper_weights.hidden_size
    parts = [slice(0, H)] + ([slice(H, 2 * H)] if cell == "lstm" else [])
    closed = (a < -1e-4).numpy()
    assert closed.any() or rate == 1.0
    assert (~closed).any()
    for part in parts:
        np.testing.assert_array_equal(new_state[:, part][closed], state.numpy()[:, part][closed])
        assert not np.array_equal(new_state[:, part][(a > 1e-4).numpy()], state.numpy()[:, part][(a > 1e-4).numpy()])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_neuron_major_kernel_on_extreme_inputs(cell, gate):
    """Inputs of scale 30 saturate the gates and nonlinearities: still the layer's numbers."""
    layer = _layer(cell, gate, 2, hidden=21, initial_update_rate=0.3)
    readout = _readout(layer)
    u, state = _inputs(layer, 6, MANY, seed=11, scale=30.0)
    _check("neuron-major extreme", _run_many(layer, readout, u, state)[1], _expected(layer, readout, u, state), 1e-5)


@pytest.mark.parametrize("hidden", [13, 70], ids=["narrow", "wide"])
def test_neuron_major_kernel_across_chunks_of_streams(hidden):
    """More streams than one chunk (CHUNK): every chunk advances, each with its own streams' state."""
    chunk = infer_skip_nm.CHUNK[1 if hidden == 70 else 0]
    layer = _layer("gru", "event", 1, hidden=hidden, initial_update_rate=0.2)
    readout = _readout(layer)
    u, state = _inputs(layer, 3, chunk + 9, seed=2)
    _check("neuron-major chunks", _run_many(layer, readout, u, state)[1], _expected(layer, readout, u, state), 1e-5)


def test_small_blocks_run_on_the_per_stream_kernel():
    layer = _layer("gru", "event", 2, hidden=13, initial_update_rate=0.2)
    stepper = NumbaStepper(step_weights(layer), _readout(layer))
    u, state = _inputs(layer, 2, infer_skip_nm.MIN_STREAMS, seed=1)
    stepper.run(u.numpy(), state.numpy())
    assert stepper.last_kernel == "per-stream"
    u, state = _inputs(layer, 2, infer_skip_nm.MIN_STREAMS + 1, seed=1)
    stepper.run(u.numpy(), state.numpy())
    assert stepper.last_kernel == "neuron-major"


def test_neuron_major_kernel_writes_every_output():
    """Outputs filled with NaN beforehand are all written (no row, step or output left unwritten)."""
    from sparsernn.core import infer_skip
    from sparsernn.core.infer_numba import CELL_CODES, GATE_CODES

    for cell, hidden in [("lstm", 13), ("gru", 70)]:
        layer = _layer(cell, "event", 2, hidden=hidden, initial_update_rate=0.3)
        readout = _readout(layer)
        u, state = _inputs(layer, 4, MANY, seed=6)
        mean = np.full((4, MANY, 2), np.nan, np.float32)
        var = mean.copy()
        arrays = infer_skip.model_arrays(step_weights(layer), readout)
        new_state = state.numpy().copy()
        infer_skip_nm.run_block_nm(*arrays, CELL_CODES[cell], GATE_CODES["event"], u.numpy(), new_state, mean, var)
        _check("neuron-major outputs", (mean, var, new_state), _expected(layer, readout, u, state), 1e-5)
