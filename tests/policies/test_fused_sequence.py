"""The fused sequence kernel computes what the core's reference computes: outputs, state, every gradient."""
import pytest
import torch

from sparsernn.core import SparseRecurrent
from sparsernn.policies.core_adapter import RecurrentCore
from sparsernn.policies.fused_sequence import fused_forward, fused_group_forward, supports_fused

PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def run(fn, layer, x, state, starts, out_weight, state_weight):
    y, final = fn(layer, x, state, starts)
    loss = (y * out_weight).sum() + (final * state_weight).sum()
    grads = torch.autograd.grad(loss, [x, state, *(getattr(layer, name) for name in PARAMS)])
    return {"y": y, "state": final, **dict(zip(("dx", "dstate", *PARAMS), grads))}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("densities", [(1.0, 1.0), (0.6, 0.3)])
@pytest.mark.parametrize("with_resets", [True, False])
def test_matches_reference(cell, densities, with_resets):
    torch.manual_seed(0)
    layer = SparseRecurrent(3, 17, cell=cell, density_ih=densities[0], density_hh=densities[1],
                            backend="reference", seed=1, dtype=torch.float64)
    steps, batch = 13, 5
    x = torch.randn(steps, batch, 3, dtype=torch.float64, requires_grad=True)
    state = torch.randn(batch, layer.state_size, dtype=torch.float64, requires_grad=True)
    starts = (torch.rand(steps, batch) < 0.25).double() if with_resets else None
    out_weight = torch.randn(steps, batch, 17, dtype=torch.float64)
    state_weight = torch.randn(batch, layer.state_size, dtype=torch.float64)
    expected = run(lambda l, *a: l(*a), layer, x, state, starts, out_weight, state_weight)
    got = run(fused_forward, layer, x, state, starts, out_weight, state_weight)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_masked_weights_get_zero_gradient():
    layer = SparseRecurrent(4, 9, cell="gru", density_hh=0.2, backend="reference", seed=0)
    y, _ = fused_forward(layer, torch.randn(6, 3, 4), layer.initial_state(3), None)
    y.sum().backward()
    assert torch.all(layer.weight_hh.grad[layer.mask_hh == 0] == 0)
    assert torch.any(layer.weight_hh.grad[layer.mask_hh == 1] != 0)


@pytest.mark.parametrize("kwargs", [{"router_keep": 0.5}, {"update_gate": "event"}, {"cell": "elman"}])
def test_routed_gated_or_elman_layers_go_to_the_core(kwargs):
    layer = SparseRecurrent(4, 8, backend="reference", seed=0, **{"cell": "gru", **kwargs})
    assert not supports_fused(layer)
    with pytest.raises(ValueError, match="fused kernel"):
        fused_forward(layer, torch.randn(2, 1, 4), layer.initial_state(1), None)
    core = RecurrentCore(layer, "fused")
    state = core.initial_states(1)
    core(torch.randn(2, 1, 4), state, torch.zeros(2, 1))
    assert core.last_kernel == "core:reference"


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_no_grad_path_matches(cell):
    layer = SparseRecurrent(3, 6, cell=cell, density_hh=0.5, backend="reference", seed=0)
    x, starts = torch.randn(4, 2, 3), torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    state = torch.randn(2, layer.state_size)
    with torch.no_grad():
        expected = layer(x, state, starts)
        got = fused_forward(layer, x, state, starts)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_group_of_layers_matches_each_layer_alone(cell):
    torch.manual_seed(0)
    layers = [SparseRecurrent(3, 7, cell=cell, density_hh=d, backend="reference", seed=s, dtype=torch.float64)
              for s, d in ((0, 0.5), (1, 1.0))]
    x = torch.randn(9, 4, 3, dtype=torch.float64, requires_grad=True)
    starts = (torch.rand(9, 4) < 0.3).double()
    states = [torch.randn(4, layer.state_size, dtype=torch.float64, requires_grad=True) for layer in layers]
    weights = [torch.randn(9, 4, 7, dtype=torch.float64) for _ in layers]
    inputs = [x, *states, *(getattr(layer, name) for layer in layers for name in PARAMS)]

    def grads(outputs):
        loss = sum((y * w).sum() + s.pow(2).sum() for (y, s), w in zip(outputs, weights))
        return torch.autograd.grad(loss, inputs)

    expected = grads([layer(x, state, starts) for layer, state in zip(layers, states)])
    got = grads(fused_group_forward(layers, x, states, starts))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)
