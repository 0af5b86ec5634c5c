"""A gated layer's per-neuron update usage (``SparseRecurrent.update_usage``) and computed fraction:
every backend reports what the reference's switches did, recomputed here from its outputs."""
import copy

import pytest
import torch

from sparsernn.core import SparseRecurrent, group_forward
from sparsernn.core.fused_selective import selective_native
from sparsernn.core.statistics import make_trace

from .conftest import random_sequence

I, H, T, B = 7, 29, 23, 5
BACKENDS = ["reference", "compiled", "fused"]


def recomputed_opens(layer, x, state, starts, y):
    """``is_open (T, B, H)`` of a run, from the switch pre-activations recomputed step by step
    from the run's outputs ``y`` (the state entering each step, reset where ``starts``)."""
    h, _, time = layer.unpack_state(state)
    opens = []
    for t in range(x.shape[0]):
        alive = 1.0 - starts[t].unsqueeze(1)
        h = h * alive
        if layer.update_gate == "rhythm":
            time = time * alive[:, 0]
            opens.append(layer.gate(time) > 0)
            time = time + 1
        else:
            opens.append(layer.gate(x[t], h) > 0)
        h = y[t]
    return torch.stack(opens)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell, gate, options", [("gru", "event", {}), ("gru", "rhythm", {}),
                                                 ("lstm", "event", {"router_keep": 0.3}),
                                                 ("elman", "rhythm", {"density_hh": 0.3})])
def test_every_backend_reports_the_references_switches(backend, cell, gate, options):
    layer = SparseRecurrent(I, H, cell=cell, update_gate=gate, initial_update_rate=0.4, seed=2,
                            dtype=torch.float64, backend="reference", **options)
    x, state, starts = random_sequence(layer, 5, T, B, reset_rate=0.1)
    with torch.no_grad():
        y_ref, _ = layer(x, state, starts)
    expected = recomputed_opens(layer, x, state, starts, y_ref).reshape(-1, H).double().mean(0)
    layer.backend = backend
    y, _ = layer(x.requires_grad_(), state, starts)  # with gradient: the training path
    assert layer.last_backend == backend
    usage = layer.update_usage()
    assert usage.dtype == torch.float64 and usage.shape == (H,) and not usage.requires_grad
    assert torch.equal(usage, expected)
    stats = layer.statistics()
    assert stats["update_rate"] == pytest.approx(usage.mean().item(), rel=1e-12)
    if backend == "fused" and selective_native([layer], x) is not None:  # the selective loops: only the open pairs
        assert stats["computed_fraction"] == pytest.approx(stats["update_rate"], rel=1e-12)
    else:  # these backends compute every candidate
        assert stats["computed_fraction"] == 1.0
    assert (usage > 0).any() and (usage < 1).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_acting_calls_record_usage_too(backend):
    """No gradient, one step (RL's acting call): the same usage as the same call with gradient."""
    layer = SparseRecurrent(I, H, update_gate="event", seed=0, backend=backend)
    x, state = torch.randn(1, B, I), torch.randn(B, H)
    with torch.no_grad():
        layer(x, state)
    acting = layer.update_usage()
    layer(x, state)
    assert torch.equal(acting, layer.update_usage())
    assert acting.sum().item() == pytest.approx(layer.statistics()["update_rate"] * H)


def test_a_group_records_each_layers_own_switches():
    layers = [SparseRecurrent(I, H, update_gate="rhythm", seed=s, backend="fused", dtype=torch.float64)
              for s in (0, 1)]
    x = torch.randn(T, B, I, dtype=torch.float64)
    states = [torch.zeros(B, layers[0].state_size, dtype=torch.float64) for _ in layers]
    group_forward(layers, x, states)
    alone = SparseRecurrent(I, H, update_gate="rhythm", seed=1, backend="reference", dtype=torch.float64)
    alone(x, states[1])
    assert torch.equal(layers[1].update_usage(), alone.update_usage())
    assert not torch.equal(layers[0].update_usage(), layers[1].update_usage())


def test_nothing_to_report_without_a_gate_or_a_call():
    dense = SparseRecurrent(I, H, backend="fused")
    assert dense.update_usage() is None and dense.statistics()["computed_fraction"] == 1.0
    dense(torch.randn(3, 2, I))
    assert dense.update_usage() is None and dense.channel_usage() == {}
    assert dense.statistics()["computed_fraction"] == 1.0 and dense.statistics()["update_rate"] == 1.0
    gated = SparseRecurrent(I, H, update_gate="event")
    assert gated.update_usage() is None
    stats = gated.statistics()
    assert stats["computed_fraction"] != stats["computed_fraction"]  # NaN before a call, as the update rate


@pytest.mark.parametrize("computed", [123, torch.tensor(123)])
def test_a_backend_that_skips_candidates_reports_its_count(computed):
    """What the selective C++ path will hand make_trace: its own count, an int or a 0-dim tensor."""
    layer = SparseRecurrent(I, H, update_gate="event", seed=0)
    preact = torch.randn(T, B, H)
    n_elements = T * B * H
    layer._record_call("fused", make_trace(None, None, [], [], n_elements, switch=[preact], computed=computed))
    stats = layer.statistics()
    assert stats["computed_fraction"] == pytest.approx(123 / n_elements)
    assert stats["update_rate"] == pytest.approx((preact > 0).double().mean().item())
    assert torch.equal(layer.update_usage(), (preact > 0).reshape(-1, H).double().mean(0))


def test_lazy_straight_through_sum_has_the_surrogates_gradient():
    """The fused trace keeps the pre-activations and sums the switches when aux_loss asks: forward the
    open count, gradient sigmoid'(a) at every pair (the update-rate term reaches closed pairs too)."""
    layer = SparseRecurrent(I, H, update_gate="event", target_update_rate=0.2, seed=0)
    preact = torch.randn(T, B, H, dtype=torch.float64, requires_grad=True)
    n_elements = T * B * H
    layer._record_call("fused", make_trace(None, None, [], [], n_elements, switch=[preact]))
    loss = layer.aux_loss()
    rate = (preact > 0).double().mean()
    assert loss.item() == pytest.approx((rate.item() - 0.2) ** 2)
    loss.backward()
    soft = torch.sigmoid(preact.detach())
    expected = 2 * (rate - 0.2) * soft * (1 - soft) / n_elements
    torch.testing.assert_close(preact.grad, expected)


def test_a_copy_after_a_training_call_holds_no_graph():
    layer = SparseRecurrent(I, H, update_gate="event", seed=0, backend="fused")
    layer(torch.randn(T, B, I, requires_grad=True))
    clone = copy.deepcopy(layer)
    assert not any(record.requires_grad for record in clone._last_trace["switch"])
    assert torch.equal(clone.update_usage(), layer.update_usage())
