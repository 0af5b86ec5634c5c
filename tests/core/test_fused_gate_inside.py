"""The update gate computed and differentiated inside the fused group's node (``core/fused_gates.py``).

Where the fused loops compute every candidate, the event gate's ``W x + b`` / the rhythm's time
indices and schedule run inside :class:`~sparsernn.core.fused._FusedSequence`, whose backward gives
the gate parameters' gradients; the update-rate loss over the loops' sums is one node
(``statistics._RateLoss``). Against the reference: outputs, final states, the loss and every gradient
(gate parameters and ``x`` included) of a group call (actor + critic, different time indices), the
acting path without gradient, rates 0.05-1.0, with and without always-open neurons, ordinary and
extreme inputs, odd sizes, the C++ and TorchScript loops."""
import pytest
import torch

import sparsernn.core.fused_selective as fused_selective
from sparsernn.core import SparseRecurrent, fused_group_forward
from sparsernn.core.statistics import _RateLoss
from sparsernn.core.update_gates import rate_penalty

from .conftest import extreme_sequence, random_sequence

RTOL = 1e-10  # float64
T, B, I, H = 11, 3, 5, 17


@pytest.fixture(params=["native", "torchscript"])
def loops(request, monkeypatch):
    """The loops that compute every candidate (the selective ones never run here)."""
    monkeypatch.setenv("SPARSERNN_NATIVE", "0" if request.param == "torchscript" else "1")
    for cell in ("gru", "lstm"):
        monkeypatch.setitem(fused_selective.SELECTIVE_SMALL_MAX_RATE, cell, 0.0)
    return request.param


def _layers(cell, gate, rate, always_open, mode="set_point"):
    return [SparseRecurrent(I, H, cell=cell, update_gate=gate, initial_update_rate=rate, target_update_rate=rate,
                            update_rate_mode=mode, update_rate_weight=50.0, always_open_fraction=always_open,
                            seed=seed, dtype=torch.float64, backend="reference") for seed in (3, 4)]


def _inputs(layers, extreme):
    make = extreme_sequence if extreme else random_sequence
    x, _, starts = make(layers[0], 7, T, B, reset_rate=0.15)
    states = [random_sequence(layer, 30 + g, 1, B, 0.0)[1] for g, layer in enumerate(layers)]
    if layers[0].update_gate == "rhythm":  # different time indices per layer, as a policy's may be
        states[1][:, -1] += 5.0
    return x, states, starts


def _outputs_and_grads(layers, x, states, starts, group: bool):
    x = x.detach().clone().requires_grad_(True)
    for layer in layers:
        layer.zero_grad(set_to_none=True)
    if group:
        outputs = fused_group_forward(layers, x, states, starts)
    else:
        outputs = [layer(x, state, starts) for layer, state in zip(layers, states)]
    gen = torch.Generator().manual_seed(5)
    loss = sum((y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() + s.square().sum()
               for y, s in outputs)
    loss = loss + sum(layer.aux_loss() for layer in layers)
    params = [p for layer in layers for p in layer.parameters()]
    grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
    return [(y.detach(), s.detach()) for y, s in outputs], loss.detach(), grads


@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("rate, always_open", [(0.05, 0.0), (0.3, 0.2), (0.5, 0.0), (0.5, 0.3), (1.0, 0.0), (1.0, 0.3)])
@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_group_with_the_gate_inside_matches_reference(cell, gate, rate, always_open, extreme, loops,
                                                      assert_rel_close):
    layers = _layers(cell, gate, rate, always_open)
    x, states, starts = _inputs(layers, extreme)
    ref_out, ref_loss, ref_grads = _outputs_and_grads(layers, x, states, starts, group=False)
    ref_usage = [layer.update_usage() for layer in layers]
    for layer in layers:
        layer.backend = "fused"
    got_out, got_loss, got_grads = _outputs_and_grads(layers, x, states, starts, group=True)
    assert layers[0].last_group_size == 2
    assert_rel_close("loss", got_loss, ref_loss, RTOL)
    for g, ((y, s), (y_ref, s_ref)) in enumerate(zip(got_out, ref_out)):
        assert_rel_close(f"y[{g}]", y, y_ref, RTOL)
        assert_rel_close(f"state[{g}]", s, s_ref, RTOL)
    for layer, usage in zip(layers, ref_usage):
        torch.testing.assert_close(layer.update_usage(), usage, rtol=0, atol=0)
    names = ["x"] + [f"layer{g}.{name}" for g, layer in enumerate(layers) for name, _ in layer.named_parameters()]
    for name, g, g_ref in zip(names, got_grads, ref_grads):
        assert (g is None) == (g_ref is None), name
        if g is not None:
            assert_rel_close(f"grad {name}", g, g_ref, RTOL)
    if rate < 1.0:  # the gate's parameters get a live gradient (all neurons open at 1.0: sigmoid' ~ 0)
        gate_grads = [g for name, g in zip(names, got_grads) if ".gate." in name and g is not None]
        assert any(g.abs().sum() > 0 for g in gate_grads)
    with torch.no_grad():  # acting: the same pre-activations without a node
        acting = fused_group_forward(layers, x, states, starts)
    for (y, s), (y_ref, s_ref) in zip(acting, ref_out):
        assert_rel_close("y, no gradient", y, y_ref, RTOL)
        assert_rel_close("state, no gradient", s, s_ref, RTOL)


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_gate_parameters_feed_the_group_node_directly(gate, loops):
    """No node of the gate's own between its parameters and the group's node (what the move saves)."""
    layers = _layers("gru", gate, 0.5, 0.0)
    for layer in layers:
        layer.backend = "fused"
    x, states, starts = _inputs(layers, False)
    (y, _), _ = fused_group_forward(layers, x, states, starts)
    node = y.grad_fn
    assert type(node).__name__ == "_FusedSequenceBackward"
    leaves = {id(fn.variable) for fn, _ in node.next_functions if fn is not None and hasattr(fn, "variable")}
    for layer in layers:
        for name, p in layer.gate.named_parameters():
            assert id(p) in leaves, f"gate.{name} reaches the node through another node"


@pytest.mark.parametrize("mode", ["ceiling", "set_point"])
@pytest.mark.parametrize("count", [0, 40, 97, 200])
def test_rate_loss_node_equals_the_straight_through_formula(mode, count):
    """``_RateLoss`` (value and gradient to the sigmoid sum) against :func:`rate_penalty` of the
    straight-through sum ``count + soft - soft.detach()``, under, at and over the target."""
    n, target, weight = 200, 0.4875, 3.0
    soft = torch.tensor(93.25, dtype=torch.float64, requires_grad=True)
    count_t = torch.tensor(count)
    got = _RateLoss.apply(soft, count_t, n, target, weight, mode == "ceiling")
    (d_got,) = torch.autograd.grad(got, soft)
    expected = weight * rate_penalty((count_t + (soft - soft.detach())) / n, target, mode)
    (d_expected,) = torch.autograd.grad(expected, soft)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(d_got, d_expected, rtol=1e-14, atol=0)
    if mode == "set_point" or count / n > target:
        assert d_got.abs() > 0
