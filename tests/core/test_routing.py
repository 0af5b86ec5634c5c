"""DS-RNN routing: the exact per-sample, per-step budget, and a router that learns."""
import math

import pytest
import torch

from sparsernn.core import SparseRecurrent


@pytest.mark.parametrize("keep", [0.1, 0.33, (0.5, 0.2), (1.0, 0.05)])
def test_router_keeps_exactly_ceil_keep_times_width(keep, reference_masks):
    masks = reference_masks
    layer = SparseRecurrent(13, 41, router_keep=keep, seed=0, backend="reference")
    keep_in, keep_h = keep if isinstance(keep, tuple) else (keep, keep)
    with torch.no_grad():
        layer(torch.randn(7, 6, 13))
    assert len(masks) == 2 * 7
    for step in range(7):
        mask_in, mask_h = masks[2 * step], masks[2 * step + 1]
        assert (mask_in.sum(1) == math.ceil(keep_in * 13)).all()
        assert (mask_h.sum(1) == math.ceil(keep_h * 41)).all()
    # selections differ between samples (step 3: the state is no longer zero)
    assert not all(torch.equal(masks[7][0], masks[7][b]) for b in range(1, 6))
    stats = layer.statistics()
    assert stats["active_input_fraction"] == math.ceil(keep_in * 13) / 13
    assert stats["active_hidden_fraction"] == math.ceil(keep_h * 41) / 41


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_router_receives_gradient_from_the_task_loss(backend):
    layer = SparseRecurrent(6, 24, router_keep=0.25, seed=0, backend=backend, dtype=torch.float64)
    x = torch.randn(16, 4, 6, dtype=torch.float64)
    opt = torch.optim.SGD(layer.router.parameters(), lr=0.1)
    for _ in range(2):  # "up" starts at zero, so "down" is reached from the second step on
        opt.zero_grad()
        y, _ = layer(x)
        y.square().sum().backward()
        opt.step()
    for name, p in layer.router.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"router.{name} got no gradient"


def test_router_balance_loss_is_zero_when_off_and_differentiable_when_on():
    off = SparseRecurrent(5, 16, router_keep=0.25, seed=0, backend="reference")
    off(torch.randn(5, 3, 5))
    assert off.aux_loss().item() == 0.0
    on = SparseRecurrent(5, 16, router_keep=0.25, router_balance_weight=1.0, seed=0, backend="reference")
    on(torch.randn(5, 3, 5))
    loss = on.aux_loss()
    assert loss.item() > 0
    loss.backward()
    assert on.router.scale.grad.abs().sum() > 0


def test_dropped_channels_do_not_affect_the_output():
    """Changing a channel the router dropped leaves the step's output unchanged."""
    layer = SparseRecurrent(8, 16, cell="elman", router_keep=(0.25, 1.0), seed=0, backend="reference",
                            dtype=torch.float64)
    x = torch.randn(1, 1, 8, dtype=torch.float64)
    h0 = torch.zeros(1, 16, dtype=torch.float64)
    scores_in, _ = layer.router(x[0], h0)
    dropped = scores_in[0].argsort()[0]  # the lowest score is never kept
    x2 = x.clone()
    x2[0, 0, dropped] += 1e-3  # small enough not to change the ranking
    with torch.no_grad():
        assert torch.equal(layer(x)[0], layer(x2)[0])


def test_kept_channels_respect_the_budget_and_follow_the_scores():
    """kept_channels gives exactly the budget per row; with the router's input-dependent terms
    zeroed the scores are its biases, so every row keeps the same, known channels."""
    layer = SparseRecurrent(6, 20, router_keep=(0.5, 0.2), seed=3, dtype=torch.float64)
    x = torch.randn(7, 4, 6, dtype=torch.float64)
    starts = torch.zeros(7, 4, dtype=torch.float64)
    starts[3, 1] = 1
    kept_in, kept_h = layer.kept_channels(x, None, starts)
    assert kept_in.shape == (7, 4, 6) and kept_h.shape == (7, 4, 20)
    assert (kept_in.sum(-1) == layer.keep_count_input).all()
    assert (kept_h.sum(-1) == layer.keep_count_hidden).all()
    assert not (kept_h == kept_h[0, 0]).all()  # a live router: the kept set varies
    with torch.no_grad():
        layer.router.scale.zero_()
        layer.router.up.zero_()
        layer.router.bias.copy_(torch.randn(26, dtype=torch.float64))
    kept_in, kept_h = layer.kept_channels(x, None, starts)
    top_in = layer.router.bias[:6].topk(layer.keep_count_input).indices
    top_h = layer.router.bias[6:].topk(layer.keep_count_hidden).indices
    assert kept_in.nonzero()[:, 2].view(7, 4, -1).sort(-1).values.eq(top_in.sort().values).all()
    assert kept_h.nonzero()[:, 2].view(7, 4, -1).sort(-1).values.eq(top_h.sort().values).all()
    dense = SparseRecurrent(6, 20, seed=3)
    kin, kh = dense.kept_channels(torch.randn(3, 2, 6))
    assert kin.all() and kh.all()
    with pytest.raises(ValueError, match="x must have shape"):
        layer.kept_channels(torch.randn(3, 2, 5, dtype=torch.float64))
