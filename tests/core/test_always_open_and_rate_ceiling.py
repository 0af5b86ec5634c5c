"""Issue 13's two layer options for tasks that need every step: always-open neurons
(``always_open_fraction``) and the one-sided rate target (``update_rate_mode="ceiling"``)."""
import numpy as np
import pytest
import torch

from sparsernn.core import GaussianReadout, SparseRecurrent, step_weights
from sparsernn.core.infer_numba import NumbaStepper
from sparsernn.core.infer_torch import TorchBlockStepper
from sparsernn.core.update_gates import OPEN_PREACTIVATION, rate_penalty


def _closed_elsewhere(layer):
    """Close every gated switch for good (bias / offset -50), so only the always-open neurons update."""
    with torch.no_grad():
        if layer.update_gate == "event":
            layer.gate.bias.fill_(-50.0)
        else:
            layer.gate.offset.fill_(-50.0)
    return layer


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                        ("0.25", TypeError), (True, TypeError), (None, TypeError)])
def test_always_open_fraction_is_validated(bad, error):
    with pytest.raises(error, match="always_open_fraction"):
        SparseRecurrent(3, 8, update_gate="event", always_open_fraction=bad)


@pytest.mark.parametrize("bad, error", [("floor", ValueError), (None, ValueError), (1, ValueError)])
def test_update_rate_mode_is_validated(bad, error):
    with pytest.raises(error, match="update_rate_mode"):
        SparseRecurrent(3, 8, update_gate="event", target_update_rate=0.5, update_rate_mode=bad)


def test_an_initial_rate_below_the_always_open_share_is_refused():
    with pytest.raises(ValueError, match="initial_update_rate=0.1 is below the share of always-open neurons"):
        SparseRecurrent(3, 8, update_gate="rhythm", always_open_fraction=0.25, initial_update_rate=0.1)
    layer = SparseRecurrent(3, 8, update_gate="rhythm", always_open_fraction=0.25, initial_update_rate=0.25)
    assert layer.gate.n_always_open == 2


@pytest.mark.parametrize("fraction, hidden, count", [(0.0, 8, 0), (0.25, 8, 2), (0.25, 6, 2), (0.25, 1, 0),
                                                    (1.0, 5, 5), (0.1, 64, 6)])
def test_the_count_of_always_open_neurons(fraction, hidden, count):
    layer = SparseRecurrent(2, hidden, update_gate="event", always_open_fraction=fraction)
    assert layer.gate.n_always_open == count
    assert layer.gate.always_open.tolist() == [i < count for i in range(hidden)]
    assert "gate.always_open" not in layer.state_dict()  # follows from the option: saved files unchanged


# ------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("cell, backend", [(cell, backend) for cell in ("gru", "lstm", "elman")
                                           for backend in ("reference", "fused")] + [("gru", "compiled")])
def test_always_open_neurons_are_open_at_every_step(cell, gate, backend):
    """With every other switch closed, the always-open neurons (and only they) change at every step,
    in every backend, and the realised rate is exactly their share (the compiled backend for the GRU
    only, to spare compilations: tests/core/test_backend_equivalence.py compares it on every cell)."""
    layer = _closed_elsewhere(SparseRecurrent(4, 12, cell=cell, update_gate=gate, always_open_fraction=0.25,
                                              seed=3, backend=backend))
    x, state = torch.randn(15, 3, 4), torch.randn(3, layer.state_size)
    if gate == "rhythm":
        state[:, -1] = 0.0
    with torch.no_grad():
        y, _ = layer(x, state)
    hs = torch.cat([layer.unpack_state(state)[0].unsqueeze(0), y])
    changed = hs[1:] != hs[:-1]  # (T, B, H)
    assert changed[..., :3].all(), "an always-open neuron kept its state"
    assert not changed[..., 3:].any(), "a closed neuron changed its state"
    assert layer.statistics()["update_rate"] == 3 / 12


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_the_gate_modules_hold_the_always_open_preactivation(gate):
    layer = SparseRecurrent(4, 10, update_gate=gate, always_open_fraction=0.3, seed=0)
    x, h = 1e3 * torch.randn(6, 4), torch.randn(6, 10)  # large inputs do not close them
    pre = layer.gate(torch.arange(6.0)) if gate == "rhythm" else layer.gate(x, h)
    assert (pre[:, :3] == OPEN_PREACTIVATION).all()
    assert (pre[:, 3:] != OPEN_PREACTIVATION).all()


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_always_open_neurons_send_no_gradient_to_the_gate(gate):
    layer = SparseRecurrent(4, 10, update_gate=gate, always_open_fraction=0.3, target_update_rate=0.2, seed=0,
                            backend="reference")
    y, _ = layer(torch.randn(9, 3, 4))
    (y.sum() + layer.aux_loss()).backward()
    for name, param in layer.gate.named_parameters():
        if param.dim() and param.shape[0] == 10:  # per-neuron rows
            assert (param.grad[:3] == 0).all(), name
            assert param.grad[3:].abs().sum() > 0, name


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_inference_steppers_follow_the_always_open_neurons(gate):
    """The steppers read step_weights(): the folded-in always-open rows give the layer's outputs."""
    layer = _closed_elsewhere(SparseRecurrent(3, 9, update_gate=gate, always_open_fraction=0.34, seed=1,
                                              backend="reference"))
    with torch.no_grad():
        layer.gate.bias.copy_(torch.linspace(-1, 1, 9)) if gate == "event" else layer.gate.offset.zero_()
    gen = torch.Generator().manual_seed(0)
    readout = GaussianReadout(0.3 * torch.randn(6, 12, generator=gen), torch.zeros(6), (-12.0, 8.0), 1e-3)
    u, state = torch.randn(11, 4, 3, generator=gen), torch.randn(4, layer.state_size, generator=gen)
    if gate == "rhythm":
        state[:, -1] = 5.0
    with torch.no_grad():
        y, final = layer(u, state)
        expected = (*readout.apply(y, u), final)
    weights = step_weights(layer)
    for got in (NumbaStepper(weights, readout).run(u.numpy(), state.numpy().copy()),
                TorchBlockStepper(weights, readout).run(u, state)):
        for a, b in zip(got, expected):
            torch.testing.assert_close(torch.as_tensor(np.asarray(a)), b, rtol=1e-5, atol=1e-5)


def test_no_always_open_neurons_computes_what_the_gate_computed_before():
    """always_open_fraction=0 draws and computes exactly what a layer without the option did."""
    torch.manual_seed(0)
    a = SparseRecurrent(4, 8, update_gate="event", seed=5)
    b = SparseRecurrent(4, 8, update_gate="event", seed=5, always_open_fraction=0.0)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    x, h = torch.randn(3, 4), torch.randn(3, 8)
    assert torch.equal(b.gate(x, h), x @ b.gate.weight_x.t() + b.gate.bias + b.gate.weight_h * h)


# ------------------------------------------------------------------ the rate ceiling
def test_the_ceiling_penalty_is_exactly_zero_at_or_below_the_target():
    for rate in (0.0, 0.2, 0.4999, 0.5):
        r = torch.tensor(rate, dtype=torch.float64, requires_grad=True)
        loss = rate_penalty(r, 0.5, "ceiling")
        loss.backward()
        assert loss.item() == 0.0 and r.grad.item() == 0.0
        assert rate_penalty(torch.tensor(rate, dtype=torch.float64), 0.5, "set_point").item() == pytest.approx(
            (rate - 0.5) ** 2)
    above = torch.tensor(0.7, dtype=torch.float64)
    assert rate_penalty(above, 0.5, "ceiling").item() == pytest.approx(0.04)
    assert rate_penalty(above, 0.5, "set_point").item() == pytest.approx(0.04)


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_the_layers_ceiling_loss_is_zero_below_the_target_and_a_set_point_is_not(gate):
    x = torch.randn(20, 4, 3)
    losses = {}
    for mode in ("ceiling", "set_point"):
        layer = SparseRecurrent(3, 16, update_gate=gate, target_update_rate=0.9, update_rate_mode=mode, seed=2,
                                update_rate_weight=2.0, initial_update_rate=0.3, backend="reference")
        layer(x)
        rate = layer.statistics()["update_rate"]
        assert rate < 0.9
        losses[mode] = layer.aux_loss()
        # under the ceiling the penalty is a constant 0 (no graph is built for its zero gradient), which
        # still takes .backward() like the set point's loss
        assert losses[mode].requires_grad
        if mode == "ceiling":
            assert losses[mode].grad_fn is None
            losses[mode].backward()
            assert all(p.grad is None for p in layer.parameters())
        if mode == "set_point":
            assert losses[mode].item() == pytest.approx(2.0 * (rate - 0.9) ** 2, rel=1e-5)
    assert losses["ceiling"].item() == 0.0 and losses["set_point"].item() > 0.5


@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_the_ceiling_loss_above_the_target_has_the_straight_through_gradient(gate, backend):
    """Above its ceiling the penalty and its gradient are the straight-through ones: the same as a set
    point at that target (both are (rate - target)^2 there)."""
    from sparsernn.core.statistics import open_st_sum

    x = torch.randn(12, 3, 4, dtype=torch.float64)
    grads = {}
    for mode in ("ceiling", "set_point"):
        layer = SparseRecurrent(4, 10, update_gate=gate, target_update_rate=0.05, update_rate_mode=mode, seed=3,
                                initial_update_rate=0.5, dtype=torch.float64, backend=backend)
        layer(x)
        loss = layer.aux_loss()
        rate = float(open_st_sum(layer._last_trace)) / layer._last_trace["n_elements"]
        assert rate > 0.05 and loss.item() == pytest.approx(layer.update_rate_weight * (rate - 0.05) ** 2, rel=1e-9)
        params = [p for p in layer.parameters() if p.requires_grad]
        grads[mode] = torch.autograd.grad(loss, params, allow_unused=True)
    nonzero = 0
    for a, b in zip(grads["ceiling"], grads["set_point"]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
            nonzero += int(a.abs().sum() > 0)
    assert nonzero > 0
