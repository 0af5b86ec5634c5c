"""Static block sparsity: exact counts, masks in the state dict, masked
weights that stay zero through optimiser steps, seeding."""
import pytest
import torch

from sparsernn.core import SparseRecurrent, hidden_proportion, solve_layer_spec


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("gru", 3), ("elman", 1)])
def test_trainable_counts_are_exact(cell, gates):
    layer = SparseRecurrent(10, 30, cell=cell, density_ih=0.3, density_hh=0.1, seed=0)
    n_ih, n_hh = layer.trainable_counts()
    assert n_ih == round(0.3 * gates * 30 * 10)
    assert n_hh == round(0.1 * gates * 30 * 30)
    assert int((layer.weight_ih != 0).sum()) == n_ih
    assert int((layer.weight_hh != 0).sum()) == n_hh
    assert hidden_proportion(layer) == pytest.approx(n_hh / (n_ih + n_hh))
    stats = layer.statistics()
    assert stats["density_hh"] == pytest.approx(n_hh / (gates * 900))
    assert stats["hidden_proportion"] == pytest.approx(hidden_proportion(layer))


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: torch.optim.SGD(p, lr=1e-1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    lambda p: torch.optim.RMSprop(p, lr=1e-2, weight_decay=1e-2),
], ids=["adam", "adamw", "sgd", "rmsprop"])
def test_masked_weights_stay_zero_through_optimizer_steps(make_optimizer):
    layer = SparseRecurrent(5, 16, cell="gru", density_ih=0.5, density_hh=0.2, seed=2, backend="reference")
    opt = make_optimizer(layer.parameters())
    before = layer.weight_hh.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        y, _ = layer(torch.randn(8, 4, 5))
        y.square().mean().backward()
        opt.step()
    assert torch.equal(layer.weight_ih[~layer.mask_ih], torch.zeros(int((~layer.mask_ih).sum())))
    assert torch.equal(layer.weight_hh[~layer.mask_hh], torch.zeros(int((~layer.mask_hh).sum())))
    assert not torch.equal(layer.weight_hh, before), "the optimiser did not change the kept weights"


def test_masks_are_saved_and_restored_by_state_dict():
    a = SparseRecurrent(5, 16, density_hh=0.2, router_keep=0.5, seed=1)
    b = SparseRecurrent(5, 16, density_hh=0.2, router_keep=0.5, seed=2)
    assert not torch.equal(a.mask_hh, b.mask_hh)
    assert "mask_hh" in a.state_dict() and "router.down" in a.state_dict()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.mask_hh, b.mask_hh)
    x = torch.randn(6, 2, 5)
    with torch.no_grad():
        torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)


def test_same_seed_same_masks_and_outputs_different_seed_differs():
    kwargs = dict(cell="lstm", density_ih=0.5, density_hh=0.3, router_keep=0.4, update_gate="rhythm",
                  backend="reference")
    a, b, c = (SparseRecurrent(4, 20, seed=s, **kwargs) for s in (11, 11, 12))
    x = torch.randn(9, 3, 4)
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])
        assert not torch.equal(a(x)[0], c(x)[0])
    for name, buffer in a.named_buffers():
        assert torch.equal(buffer, dict(b.named_buffers())[name])
    assert not torch.equal(a.mask_hh, c.mask_hh)


def test_unseeded_layers_follow_torch_manual_seed():
    torch.manual_seed(5)
    a = SparseRecurrent(3, 8, density_hh=0.5)
    torch.manual_seed(5)
    b = SparseRecurrent(3, 8, density_hh=0.5)
    assert a.seed == b.seed and torch.equal(a.mask_hh, b.mask_hh)


# ---------------------------------------------------------------- the spec solver
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("proportion", [0.2, 0.5, 0.8])
def test_solve_layer_spec_meets_budget_and_proportion(cell, proportion):
    spec = solve_layer_spec(6, cell, param_budget=5000, hidden_proportion=proportion)
    layer = spec.build(seed=0)
    n_ih, n_hh = layer.trainable_counts()
    assert n_ih + n_hh == 5000
    assert hidden_proportion(layer) == pytest.approx(proportion, abs=1e-3)
    # the smallest feasible hidden size: one fewer unit cannot hold the budget
    gates = {"lstm": 4, "gru": 3, "elman": 1}[cell]
    smaller = spec.hidden_size - 1
    assert gates * smaller * smaller < n_hh or gates * smaller * 6 < n_ih


def test_solve_layer_spec_with_hidden_size():
    spec = solve_layer_spec(8, "gru", param_budget=6000, hidden_proportion=0.75, hidden_size=64)
    assert spec.hidden_size == 64 and spec.budget == 6000
    assert spec.density_hh == pytest.approx(4500 / (3 * 64 * 64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_size=8), "density_hh would be"),
    (dict(hidden_size=20, hidden_proportion=0.01), "density_ih would be"),
    (dict(hidden_proportion=1.0), r"hidden_proportion must be in \(0, 1\)"),
    (dict(param_budget=0), "param_budget must be a positive int"),
    (dict(cell="mlp"), "cell must be one of"),
])
def test_solve_layer_spec_names_the_failing_constraint(kwargs, match):
    args = dict(input_size=4, cell="gru", param_budget=2000, hidden_proportion=0.5) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        solve_layer_spec(**args)
