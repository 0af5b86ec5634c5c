"""Core's inference backends (numba, torch block loop, fused) against the layer followed by its read-out,
the step-weights contract they read, and the rule that picks one; the numba kernels that skip closed
neurons at update rates 0.05-1.0."""
import numpy as np
import pytest
import torch

from sparsernn.core import (GATE_ORDER, NUMBA_MAX_STREAMS, GaussianReadout, InferenceStepper, SparseRecurrent,
                            choose_inference_backend, step_weights)
from sparsernn.core.inference import skip_max_open_share
from sparsernn.core.infer_numba import NumbaStepper
from sparsernn.core.infer_torch import TorchBlockStepper
from sparsernn.core.inference import fused_inference

CELLS = ["gru", "lstm", "elman"]
GATES = [None, "event", "rhythm"]


RATES = [0.05, 0.1, 0.3, 0.5, 1.0]


def _layer(cell, gate, n_in, hidden=13, **options):
    if gate == "rhythm":
        options.setdefault("rhythm_frequencies", 3)
    return SparseRecurrent(n_in, hidden, cell=cell, update_gate=gate, density_hh=0.5, backend="reference", seed=4,
                           **options)


def _readout(layer, seed=5, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    width = layer.hidden_size + layer.input_size
    weight = scale * torch.randn(2 * layer.input_size, width, generator=gen)
    return GaussianReadout(weight, 0.1 * torch.randn(2 * layer.input_size, generator=gen), (-12.0, 8.0), 1e-3)


def _inputs(layer, steps, batch, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    u = scale * torch.randn(steps, batch, layer.input_size, generator=gen)
    state = torch.randn(batch, layer.state_size, generator=gen)
    if layer.update_gate == "rhythm":
        state[:, -1] = torch.randint(0, 2000, (batch,), generator=gen).float()
    return u, state


def _expected(layer, readout, u, state):
    with torch.no_grad():
        y, final = layer(u, state)
        return (*readout.apply(y, u), final)


def _check(name, got, expected, tol):
    for part, a, b in zip(("mean", "var", "state"), got, expected):
        a = torch.as_tensor(a)
        assert torch.isfinite(a).all(), f"{name} {part}: non-finite values"
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m, p=part: f"{name} {p}: {m}")


@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["random", "extreme"])
@pytest.mark.parametrize("n_in", [1, 3])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("cell", CELLS)
def test_every_backend_equals_the_layer_and_its_readout(cell, gate, n_in, scale):
    """numba, torch and fused inference compute the reference layer followed by the read-out, on fresh random
    inputs and on inputs 30 times larger (saturated gates, clamped log-variances)."""
    layer = _layer(cell, gate, n_in)
    readout = _readout(layer)
    u, state = _inputs(layer, 17, 7, seed=n_in, scale=scale)
    expected = _expected(layer, readout, u, state)
    weights = step_weights(layer)
    state_np = state.numpy().copy()
    _check("numba", NumbaStepper(weights, readout).run(u.numpy(), state_np), expected, 1e-5)
    np.testing.assert_array_equal(state_np, state.numpy())  # the input state is not changed
    _check("torch", TorchBlockStepper(weights, readout).run(u, state), expected, 1e-5)
    _check("fused", fused_inference(layer, readout, u, state), expected, 1e-5)


@pytest.mark.parametrize("batch, backend", [(1, "numba"), (NUMBA_MAX_STREAMS, "numba"),
                                            (NUMBA_MAX_STREAMS + 1, "torch")])
def test_inference_stepper_applies_the_rule_and_says_which_ran(batch, backend):
    layer = _layer("lstm", "rhythm", 2)
    readout = _readout(layer)
    u, state = _inputs(layer, 5, batch, seed=0)
    stepper = InferenceStepper(layer, readout)
    assert stepper.last_backend is None and stepper.backend_for(batch) == backend
    got = stepper.run(u.numpy(), state.numpy())
    assert stepper.last_backend == backend
    _check(backend, got, _expected(layer, readout, u, state), 1e-5)


def test_routed_layers_run_on_the_fused_backend():
    layer = _layer("gru", "event", 3, router_keep=0.5)
    readout = _readout(layer)
    assert choose_inference_backend(layer, 1) == choose_inference_backend(layer, 1000) == "fused"
    with pytest.raises(ValueError, match="routes channels"):
        step_weights(layer)
    stepper = InferenceStepper(layer, readout)
    assert stepper.step_row is None
    u, state = _inputs(layer, 6, 4, seed=1)
    got = stepper.run(u.numpy(), state.numpy())
    assert stepper.last_backend == "fused"
    _check("fused", got, _expected(layer, readout, u, state), 1e-5)


@pytest.mark.parametrize("cell, gate", [("gru", None), ("lstm", "rhythm"), ("elman", "event")])
def test_step_weights_state_this_contract(cell, gate):
    """Gate order, state layout [h | c | t], masked weights, a frozen copy."""
    layer = _layer(cell, gate, 3)
    weights = step_weights(layer)
    H = layer.hidden_size
    assert weights.gate_order == GATE_ORDER[cell] and len(weights.gate_order) * H == weights.weight_ih.shape[0]
    expected = [("h", H)] + ([("c", H)] if cell == "lstm" else []) + ([("t", 1)] if gate == "rhythm" else [])
    assert list(weights.state_layout) == expected and weights.state_size == layer.state_size
    assert torch.equal(weights.weight_hh, layer.effective_weights()[1])
    assert (weights.weight_hh[~layer.mask_hh] == 0).all()
    state = torch.randn(4, layer.state_size)
    for got, want in zip(weights.split_state(state), layer.unpack_state(state)):
        assert (got is None and want is None) or torch.equal(got, want)
    if gate == "rhythm":
        time = torch.tensor([0.0, 5.0, 123.0])
        torch.testing.assert_close(weights.rhythm_preactivation(time), layer.gate(time))
    with torch.no_grad():
        layer.weight_hh.add_(1.0)
    assert not torch.equal(weights.weight_hh, layer.effective_weights()[1])  # a snapshot
    with pytest.raises(Exception):
        weights.cell = "gru"  # frozen


def test_readout_checks_its_arguments():
    layer = _layer("gru", None, 2)
    with pytest.raises(ValueError, match="weight"):
        GaussianReadout(torch.zeros(3, 15), torch.zeros(3), (-1.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="bias"):
        GaussianReadout(torch.zeros(4, 15), torch.zeros(3), (-1.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="log_var_range"):
        GaussianReadout(torch.zeros(4, 15), torch.zeros(4), (1.0, -1.0), 0.0)
    with pytest.raises(ValueError, match="min_variance"):
        GaussianReadout(torch.zeros(4, 15), torch.zeros(4), (-1.0, 1.0), -1.0)
    with pytest.raises(ValueError, match="readout.weight must have H \\+ I = 15 columns"):
        NumbaStepper(step_weights(layer), GaussianReadout(torch.zeros(4, 14), torch.zeros(4), (-1.0, 1.0), 0.0))
    with pytest.raises(TypeError, match="readout must be a GaussianReadout"):
        InferenceStepper(layer, (torch.zeros(4, 15), torch.zeros(4)))


def _preactivation(weights, u, state):
    """The switch's pre-activation ``(B, H)`` for points ``u (B, I)`` from ``state``, in float64 (the contract)."""
    h, _, time = weights.split_state(state)
    if weights.update_gate == "rhythm":
        return weights.rhythm_preactivation(time).double()
    return (u.double() @ weights.event_weight_x.double().T + weights.event_weight_h.double() * h.double()
            + weights.event_bias.double())


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("cell", CELLS)
def test_skipping_kernels_equal_the_layer_and_keep_closed_neurons_exactly(cell, gate, rate):
    """At update rates 0.05-1.0 and odd sizes (I=3, H=37, T=11, B=5), the numba kernels that compute open
    neurons only give the layer's numbers, block and one-point paths alike, and a neuron closed at a step
    keeps h (and c) bit for bit."""
    layer = _layer(cell, gate, 3, hidden=37, initial_update_rate=rate)
    readout = _readout(layer)
    u, state = _inputs(layer, 11, 5, seed=7)
    if gate == "rhythm":  # past the first 2000 indices, where the initial rate put some neurons' minimum at a = 0+
        state[:, -1] += 5000
    expected = _expected(layer, readout, u, state)
    weights = step_weights(layer)
    stepper = NumbaStepper(weights, readout)
    _check("numba block", stepper.run(u.numpy(), state.numpy()), expected, 1e-5)
    rows, means, variances = state.numpy().copy(), np.empty((5, 3), np.float32), np.empty((5, 3), np.float32)
    for t in range(u.shape[0]):
        for b in range(u.shape[1]):
            stepper.step_row(u[t, b].numpy().copy(), b, rows, means, variances)
    _check("numba rows", (means, variances, rows), tuple(x[-1] if x.dim() == 3 else x for x in expected), 1e-5)
    # one step: closed neurons keep their state exactly (pairs within 1e-4 of the threshold left out)
    a = _preactivation(weights, u[0], state)
    new_state = stepper.run(u[:1].numpy(), state.numpy())[2]
    H = layer.hidden_size
    parts = [slice(0, H)] + ([slice(H, 2 * H)] if cell == "lstm" else [])
    closed = (a < -1e-4).numpy()
    assert closed.any() or rate == 1.0
    for part in parts:
        np.testing.assert_array_equal(new_state[:, part][closed], state.numpy()[:, part][closed])
    open_share = float((a > 0).double().mean())
    assert stepper.open_share(u[0].numpy(), state.numpy()) == pytest.approx(open_share, abs=1 / a.numel())


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_large_blocks_of_a_gated_layer_run_where_the_open_share_says(gate):
    """Above NUMBA_MAX_STREAMS streams a gated layer runs on numba (skipping) when its switch opens few neurons
    on the block's first row and on torch when it opens most; both give the layer's numbers."""
    batch = NUMBA_MAX_STREAMS + 3
    for rate, backend in [(0.05, "numba"), (1.0, "torch")]:
        layer = _layer("gru", gate, 2, hidden=21, initial_update_rate=rate)
        readout = _readout(layer)
        u, state = _inputs(layer, 4, batch, seed=3)
        stepper = InferenceStepper(layer, readout)
        share = stepper.open_share(u[0].numpy(), state.numpy())
        assert (share <= skip_max_open_share(21)) == (backend == "numba")
        got = stepper.run(u.numpy(), state.numpy())
        assert stepper.last_backend == backend
        _check(backend, got, _expected(layer, readout, u, state), 1e-5)


def test_the_rule_reads_the_open_share_of_gated_layers_only():
    gated, dense = _layer("gru", "event", 2, hidden=13), _layer("gru", None, 2, hidden=13)
    wide, many = _layer("gru", "event", 2, hidden=64), NUMBA_MAX_STREAMS + 1
    assert choose_inference_backend(gated, NUMBA_MAX_STREAMS, open_share=1.0) == "numba"
    assert choose_inference_backend(gated, many) == "torch"  # share not known
    assert choose_inference_backend(gated, many, open_share=skip_max_open_share(13)) == "numba"
    assert choose_inference_backend(gated, many, open_share=skip_max_open_share(13) + 0.01) == "torch"
    assert skip_max_open_share(64) > skip_max_open_share(13)
    assert choose_inference_backend(wide, many, open_share=skip_max_open_share(64)) == "numba"
    assert choose_inference_backend(dense, many, open_share=0.0) == "torch"  # no switch: nothing to skip
