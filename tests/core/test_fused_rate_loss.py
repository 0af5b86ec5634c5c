"""The update-rate loss taken inside the fused loops against the reference.

The fused loops that compute every candidate take the switches' open count and ``sum(sigmoid(a))``
in their forward pass and add that sum's gradient to every ``a`` inside their backward recursion
(``core/csrc/fused_*.cpp``; ``core/fused.py`` for the TorchScript loops). Here: outputs, final state,
the loss and every gradient (the gate's parameters included) against the reference backend, with the
loss always on (``update_rate_mode="set_point"``) and a weight large enough that a wrong or missing
term moves the gradients far past the tolerance; GRU and LSTM, both gates, rates 0.05-1.0, odd sizes,
ordinary and extreme inputs, the C++ and TorchScript loops, and the selective loops (closed pairs
skipped) beside them. A group call (actor + critic) must equal separate reference calls too."""
import pytest
import torch

import sparsernn.core.fused_selective as fused_selective
from sparsernn.core import SparseRecurrent, fused_group_forward

from .conftest import _run_with_grads, extreme_sequence, random_sequence

RATES = (0.05, 0.3, 0.5, 1.0)
RTOL = 1e-10  # float64
T, B, I, H = 13, 3, 5, 19


@pytest.fixture(params=["native", "native-selective", "torchscript"])
def loops(request, monkeypatch):
    """The fused loops that compute every candidate (C++, then TorchScript), and the selective C++ loops
    (closed pairs skipped; run for every configured rate here)."""
    monkeypatch.setenv("SPARSERNN_NATIVE", "0" if request.param == "torchscript" else "1")
    ceiling = 1.0 if request.param == "native-selective" else 0.0
    for cell in ("gru", "lstm"):
        monkeypatch.setitem(fused_selective.SELECTIVE_SMALL_MAX_RATE, cell, ceiling)
    return request.param


def _layer(cell, gate, rate, seed, **extra):
    return SparseRecurrent(I, H, cell=cell, update_gate=gate, initial_update_rate=rate, target_update_rate=rate,
                           update_rate_mode="set_point", update_rate_weight=50.0, seed=seed, dtype=torch.float64,
                           backend="reference", **extra)


def _check_against_reference(layer, x, state, starts, assert_rel_close):
    ref = _run_with_grads(layer, x, state, starts)
    ref_loss, ref_stats = layer.aux_loss().item(), layer.statistics()
    layer.backend = "fused"
    got = _run_with_grads(layer, x, state, starts)
    assert layer.last_backend == "fused"
    assert_rel_close("y", got[0], ref[0], RTOL)
    assert_rel_close("final state", got[1], ref[1], RTOL)
    assert layer.aux_loss().item() == pytest.approx(ref_loss, rel=RTOL, abs=1e-300)
    for name, grad in ref[2].items():
        assert_rel_close(f"grad {name}", got[2][name], grad, RTOL)
    stats = layer.statistics()
    stats.pop("computed_fraction"), ref_stats.pop("computed_fraction")
    assert stats == pytest.approx(ref_stats)
    return ref


@pytest.mark.parametrize("extreme", [False, True])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("gate", ["event", "rhythm"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rate_loss_in_the_loops_matches_reference(cell, gate, rate, extreme, loops, assert_rel_close):
    seed = 11 + 7 * RATES.index(rate) + (3 if gate == "rhythm" else 0) + (1 if cell == "lstm" else 0)
    layer = _layer(cell, gate, rate, seed)
    make = extreme_sequence if extreme else random_sequence
    x, state, starts = make(layer, seed, T, B, reset_rate=0.1)
    ref = _check_against_reference(layer, x, state, starts, assert_rel_close)
    gate_grads = [g for name, g in ref[2].items() if name.startswith("gate.")]
    assert any(g is not None and g.abs().sum() > 0 for g in gate_grads), "the test needs a live gate gradient"


@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_rate_loss_gradient_is_the_whole_sigmoid_sum(gate, loops):
    """The loss's gradient alone (no output term) equals d/da of ``weight * (rate - target)^2`` through
    ``sum(sigmoid(a))`` at every pair, closed ones too: compared with the reference's, and non-zero."""
    layer = _layer("gru", gate, 0.3, 5)
    x, state, starts = random_sequence(layer, 5, T, B, reset_rate=0.0)
    grads = {}
    for backend in ("reference", "fused"):
        layer.backend = backend
        layer.zero_grad(set_to_none=True)
        layer(x, state, starts)
        layer.aux_loss().backward()
        grads[backend] = {name: p.grad for name, p in layer.named_parameters() if p.grad is not None}
    assert any(g.abs().sum() > 0 for name, g in grads["reference"].items() if name.startswith("gate."))
    for name, p in layer.named_parameters():  # a gradient one side leaves unset must be zero on the other
        g, g_ref = (grads[side].get(name, torch.zeros_like(p)) for side in ("fused", "reference"))
        torch.testing.assert_close(g, g_ref, rtol=RTOL, atol=1e-300, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("gate", ["event", "rhythm"])
def test_group_rate_loss_equals_separate_reference_calls(cell, gate, loops, assert_rel_close):
    actor, critic = (_layer(cell, gate, 0.5, seed, always_open_fraction=0.2) for seed in (1, 2))
    x, _, starts = random_sequence(actor, 9, T, B, reset_rate=0.1)
    states = [random_sequence(layer, 20 + g, 1, B, 0.0)[1] for g, layer in enumerate((actor, critic))]
    params = list(actor.parameters()) + list(critic.parameters())

    def grads_of(outputs):
        loss = sum((y * (g + 1)).sum() + s.square().sum() for g, (y, s) in enumerate(outputs))
        loss = loss + actor.aux_loss() + critic.aux_loss()
        return outputs, loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    ref_out, ref_loss, ref_grads = grads_of([layer(x, s, starts) for layer, s in zip((actor, critic), states)])
    for layer in (actor, critic):
        layer.backend = "fused"
    got_out, got_loss, got_grads = grads_of(fused_group_forward([actor, critic], x, states, starts))
    assert actor.last_group_size == 2
    assert_rel_close("loss", got_loss, ref_loss, RTOL)
    for (y, s), (y_ref, s_ref) in zip(got_out, ref_out):
        assert_rel_close("y", y, y_ref, RTOL)
        assert_rel_close("state", s, s_ref, RTOL)
    for (name, _), g, g_ref in zip([*actor.named_parameters(), *critic.named_parameters()], got_grads, ref_grads):
        assert (g is None) == (g_ref is None), name
        if g is not None:
            assert_rel_close(f"grad {name}", g, g_ref, RTOL)


def test_fused_record_has_no_gradient_and_counts_as_the_reference():
    """The fused loops' switch record is kept without gradient (nothing reduces it for the loss), and its
    open count and per-neuron usage are the reference's."""
    layer = _layer("gru", "event", 0.5, 3)
    x, state, starts = random_sequence(layer, 3, T, B, reset_rate=0.1)
    layer(x, state, starts)
    ref_usage, ref_rate = layer.update_usage(), layer.statistics()["update_rate"]
    layer.backend = "fused"
    layer(x, state, starts)
    trace = layer._last_trace
    assert not any(record.requires_grad for record in trace["switch"])
    assert trace["soft_sum"].requires_grad
    torch.testing.assert_close(layer.update_usage(), ref_usage, rtol=0, atol=0)
    assert layer.statistics()["update_rate"] == ref_rate
