"""A layer's state governs it however it arrived: masks loaded from a state dict govern
training (and the reported densities), and ``copy.deepcopy`` works at any time (after a
grad-mode forward too) and gives a layer that computes the same."""
import copy

import pytest
import torch
from torch import nn

from sparsernn.core import SparseRecurrent, fused_group_forward

CELLS = ["lstm", "gru", "elman"]


def _adam_steps(layer, steps=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        y, _ = layer(torch.randn(6, 3, layer.input_size, generator=gen))
        y.square().mean().backward()
        opt.step()


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("cell", CELLS)
def test_masks_loaded_into_a_dense_layer_govern_training(cell, backend):
    sparse = SparseRecurrent(5, 16, cell=cell, density_ih=0.5, density_hh=0.2, seed=1, backend=backend)
    layer = SparseRecurrent(5, 16, cell=cell, seed=2, backend=backend)  # built dense
    layer.load_state_dict(sparse.state_dict())
    assert layer.statistics()["density_hh"] == sparse.statistics()["density_hh"] < 0.21
    assert layer.density_ih == sparse.statistics()["density_ih"]
    assert layer.density_hh == sparse.statistics()["density_hh"]
    with torch.no_grad():
        x = torch.randn(7, 2, 5)
        assert torch.equal(layer(x)[0], sparse(x)[0])
    _adam_steps(layer)
    assert int((layer.weight_ih[~layer.mask_ih] != 0).sum()) == 0
    assert int((layer.weight_hh[~layer.mask_hh] != 0).sum()) == 0
    assert layer.statistics()["density_hh"] == sparse.statistics()["density_hh"]
    assert int((layer.weight_hh != 0).sum()) == layer.trainable_counts()[1]


def test_dense_masks_loaded_into_a_sparse_layer_free_every_weight():
    dense = SparseRecurrent(5, 16, seed=1)
    layer = SparseRecurrent(5, 16, density_ih=0.5, density_hh=0.2, seed=2, backend="reference")
    layer.load_state_dict(dense.state_dict())
    assert (layer.density_ih, layer.density_hh) == (1.0, 1.0)
    assert layer.statistics()["density_hh"] == 1.0
    _adam_steps(layer)
    assert not torch.equal(layer.weight_hh, dense.weight_hh)
    assert int((layer.weight_hh == 0).sum()) == 0


def test_loading_zeroes_weights_that_the_loaded_mask_drops():
    sparse = SparseRecurrent(4, 8, density_hh=0.3, seed=1)
    state = sparse.state_dict()
    state["weight_hh"] = torch.ones_like(state["weight_hh"])  # nonzero where the mask is False
    layer = SparseRecurrent(4, 8, seed=2)
    layer.load_state_dict(state)
    assert torch.equal(layer.weight_hh, layer.mask_hh.to(layer.weight_hh.dtype))


LAYER_KINDS = [dict(cell=cell, update_gate=gate, router_keep=keep)
               for cell in CELLS for gate in (None, "rhythm", "event") for keep in (None, 0.5)]


@pytest.mark.parametrize("options", LAYER_KINDS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_deepcopy_after_a_grad_forward_computes_the_same(options):
    layer = SparseRecurrent(4, 6, seed=0, density_hh=0.5, router_balance_weight=0.1,
                            target_update_rate=0.5 if options["update_gate"] else None, **options)
    x = torch.randn(5, 2, 4)
    layer(x)[0].sum().backward()  # the trace now holds tensors of an autograd graph
    clone = copy.deepcopy(layer)
    assert clone.statistics() == layer.statistics()
    assert clone.aux_loss().item() == layer.aux_loss().item()
    state = torch.randn(2, layer.state_size).abs()
    with torch.no_grad():
        y, final = layer(x, state)
        y_copy, final_copy = clone(x, state)
    assert torch.equal(y_copy, y) and torch.equal(final_copy, final)
    assert clone.last_backend == layer.last_backend
    with torch.no_grad():
        clone.weight_hh.add_(1.0)
    assert not torch.equal(clone.weight_hh, layer.weight_hh), "the copy shares parameters with the original"


class _PolicyLike(nn.Module):
    """What a recurrent policy holds: an actor and a critic layer run as one fused group, and heads."""

    def __init__(self):
        super().__init__()
        self.actor = SparseRecurrent(3, 8, update_gate="event", target_update_rate=0.5, seed=1)
        self.critic = SparseRecurrent(3, 8, update_gate="event", target_update_rate=0.5, seed=2)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        states = [self.actor.initial_state(x.shape[1]), self.critic.initial_state(x.shape[1])]
        (y_a, _), (y_c, _) = fused_group_forward([self.actor, self.critic], x, states)
        return self.head(y_a) + self.head(y_c)


def test_deepcopy_of_a_module_holding_layers_after_training():
    policy = _PolicyLike()
    x = torch.randn(4, 3, 3)
    loss = policy(x).square().mean() + policy.actor.aux_loss() + policy.critic.aux_loss()
    loss.backward()
    clone = copy.deepcopy(policy)
    with torch.no_grad():
        assert torch.equal(clone(x), policy(x))
