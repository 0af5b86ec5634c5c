"""A routed layer's channel usage (``SparseRecurrent.channel_usage``) and realised keep fractions:
what the fused backend records is what the reference's masks kept."""
import pytest
import torch

from sparsernn.core import SparseRecurrent
from sparsernn.core.statistics import kept_mask

I, H, T, B = 13, 41, 7, 6


def reference_run_masks(masks, keep, x, state, starts=None):
    """The reference backend's (input, hidden) masks of one call, stacked to (T * B, I) / (T * B, H);
    ``masks`` is the ``reference_masks`` fixture's list."""
    layer = SparseRecurrent(I, H, router_keep=keep, seed=0, backend="reference", dtype=torch.float64)
    with torch.no_grad():
        layer(x, state, starts)
    return torch.cat(masks[0::2]), torch.cat(masks[1::2])


@pytest.mark.parametrize("keep", [0.25, (1.0, 0.1), (0.5, 0.3)])
def test_fused_usage_is_the_share_of_rows_the_reference_kept(keep, reference_masks):
    torch.manual_seed(0)
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = torch.randn(B, H, dtype=torch.float64)
    starts = (torch.rand(T, B) < 0.3).double()  # a reset zeroes h: every hidden score ties there
    mask_in, mask_h = reference_run_masks(reference_masks, keep, x, state, starts)
    layer = SparseRecurrent(I, H, router_keep=keep, seed=0, backend="fused", dtype=torch.float64)
    layer(x.requires_grad_(), state, starts)  # with gradient: the training path
    usage = layer.channel_usage()
    assert layer.last_backend == "fused"
    assert torch.equal(usage["input"], mask_in.double().mean(0))
    assert torch.equal(usage["hidden"], mask_h.double().mean(0))
    assert not usage["hidden"].requires_grad
    stats = layer.statistics()
    assert stats["active_input_fraction"] == layer.keep_count_input / I
    assert stats["active_hidden_fraction"] == layer.keep_count_hidden / H
    # shares of rows, not counts: each row keeps k channels, so the shares sum to k
    assert usage["hidden"].sum().item() == pytest.approx(layer.keep_count_hidden)
    assert usage["hidden"].max() <= 1.0


def test_a_group_records_each_layers_own_selection():
    from sparsernn.core import group_forward

    torch.manual_seed(1)
    layers = [SparseRecurrent(I, H, router_keep=0.2, seed=s, backend="fused", dtype=torch.float64) for s in (0, 1)]
    x = torch.randn(T, B, I, dtype=torch.float64)
    group_forward(layers, x, [torch.randn(B, H, dtype=torch.float64) for _ in layers])
    alone = SparseRecurrent(I, H, router_keep=0.2, seed=1, backend="fused", dtype=torch.float64)
    torch.manual_seed(1)
    x_again = torch.randn(T, B, I, dtype=torch.float64)
    states = [torch.randn(B, H, dtype=torch.float64) for _ in layers]
    group_forward(layers, x_again, states)
    alone(x_again, states[1])
    assert torch.equal(layers[1].channel_usage()["hidden"], alone.channel_usage()["hidden"])
    assert not torch.equal(layers[0].channel_usage()["hidden"], layers[1].channel_usage()["hidden"])


def test_acting_calls_record_usage_too():
    """No gradient, one step (RL's acting call, the streaming detector's): the C++ path records the same."""
    layer = SparseRecurrent(I, H, router_keep=0.25, seed=0, backend="fused")
    x, state = torch.randn(1, B, I), torch.randn(B, H)
    with torch.no_grad():
        layer(x, state)
    usage = layer.channel_usage()
    assert usage["hidden"].sum().item() == pytest.approx(layer.keep_count_hidden)
    with_grad = SparseRecurrent(I, H, router_keep=0.25, seed=0, backend="fused")
    with_grad(x, state)
    assert torch.equal(usage["hidden"], with_grad.channel_usage()["hidden"])


def test_ties_go_to_the_lower_channel_index():
    scores = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5], [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert kept_mask(scores, 2).tolist() == [[False, True, True, False, False], [True, True, False, False, False]]


def test_no_usage_without_a_router_a_call_or_a_recorded_selection():
    assert SparseRecurrent(4, 8).channel_usage() == {}
    dense = SparseRecurrent(4, 8, backend="fused")
    dense(torch.randn(3, 2, 4))
    assert dense.channel_usage() == {}
    routed = SparseRecurrent(4, 8, router_keep=0.5, backend="fused")
    assert routed.channel_usage() == {}  # before the first call
    assert routed.statistics()["active_hidden_fraction"] == 0.5  # no call yet: the budget


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_every_backend_records_the_same_usage(backend):
    """The reference and compiled backends record their selections too: the usage they report is
    the fused backend's on the same call (the same channels kept, ties to the lower index)."""
    x = torch.randn(T, B, I, dtype=torch.float64)
    layer = SparseRecurrent(I, H, router_keep=0.25, seed=3, backend="fused", dtype=torch.float64)
    with torch.no_grad():
        layer.router.up.normal_()  # a live context term
    layer(x)
    fused = layer.channel_usage()
    layer.backend = backend
    layer(x)
    got = layer.channel_usage()
    assert layer.last_backend == backend
    for side in ("input", "hidden"):
        assert torch.equal(got[side], fused[side]), side
    assert layer.statistics()["active_hidden_fraction"] == layer.keep_count_hidden / H


def test_usage_survives_a_deepcopy():
    import copy

    layer = SparseRecurrent(I, H, router_keep=0.25, seed=0, backend="fused")
    layer(torch.randn(T, B, I, requires_grad=True))
    twin = copy.deepcopy(layer)
    assert torch.equal(twin.channel_usage()["hidden"], layer.channel_usage()["hidden"])
