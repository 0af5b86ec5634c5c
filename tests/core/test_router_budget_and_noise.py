"""set_router_keep (the budget changed between calls) and router_noise (Gumbel exploration in the top-k)."""
import math

import pytest
import torch

import sparsernn.core.reference as reference
from sparsernn.core import SparseRecurrent


def recorded_masks(monkeypatch):
    masks = []
    original = reference.topk_mask

    def recording(scores, k):
        masks.append(original(scores, k))
        return masks[-1]

    monkeypatch.setattr(reference, "topk_mask", recording)
    return masks


@pytest.mark.parametrize("keep", [0.5, (1.0, 0.1), (0.3, 0.7)])
def test_set_router_keep_sets_the_exact_budget_of_the_next_call(keep, monkeypatch):
    masks = recorded_masks(monkeypatch)
    layer = SparseRecurrent(9, 30, router_keep=0.1, seed=0, backend="reference")
    layer.set_router_keep(keep)
    keep_in, keep_h = keep if isinstance(keep, tuple) else (keep, keep)
    assert layer.router_keep == (keep_in, keep_h)
    with torch.no_grad():
        layer(torch.randn(4, 5, 9))
    assert all((m.sum(1) == math.ceil(keep_in * 9)).all() for m in masks[0::2])
    assert all((m.sum(1) == math.ceil(keep_h * 30)).all() for m in masks[1::2])
    stats = layer.statistics()
    assert stats["active_input_fraction"] == math.ceil(keep_in * 9) / 9
    assert stats["active_hidden_fraction"] == math.ceil(keep_h * 30) / 30


@pytest.mark.parametrize("backend", ["fused", "compiled"])
def test_a_changed_budget_gives_the_same_function_on_the_fast_backends(backend):
    torch.manual_seed(0)
    ref = SparseRecurrent(5, 20, router_keep=0.1, seed=1, backend="reference", dtype=torch.float64)
    fast = SparseRecurrent(5, 20, router_keep=0.1, seed=1, backend=backend, dtype=torch.float64)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    for keep in [(1.0, 0.55), (0.4, 0.25)]:
        ref.set_router_keep(keep)
        fast.set_router_keep(keep)
        torch.testing.assert_close(fast(x)[0], ref(x)[0])


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (1.5, ValueError), ((0.5,), ValueError),
                                        ("half", TypeError), (None, ValueError), ((0.5, -1.0), ValueError)])
def test_a_refused_budget_raises_naming_it_and_changes_nothing(bad, error):
    layer = SparseRecurrent(4, 10, router_keep=(1.0, 0.3), seed=0)
    with pytest.raises(error, match="keep"):
        layer.set_router_keep(bad)
    assert (layer.router_keep, layer.keep_count_input, layer.keep_count_hidden) == ((1.0, 0.3), 4, 3)


def test_set_router_keep_on_an_unrouted_layer_is_refused():
    layer = SparseRecurrent(4, 10, seed=0)
    with pytest.raises(ValueError, match="router_keep"):
        layer.set_router_keep(0.5)
    assert layer.router_keep is None and layer.keep_count_hidden == 10


def test_noise_changes_the_selection_in_training_only_and_keeps_the_budget(monkeypatch):
    masks = recorded_masks(monkeypatch)
    kwargs = dict(router_keep=(1.0, 0.25), seed=0, backend="reference", dtype=torch.float64)
    plain, noisy = SparseRecurrent(3, 16, **kwargs), SparseRecurrent(3, 16, router_noise=1.0, **kwargs)
    x = torch.randn(8, 6, 3, dtype=torch.float64)
    torch.manual_seed(0)
    noisy.eval()
    assert torch.equal(noisy(x)[0], plain(x)[0])  # eval: no noise, same function
    masks.clear()
    noisy.train()
    y, _ = noisy(x)
    assert not torch.equal(y, plain(x)[0])
    hidden_masks = masks[1:16:2]  # the noisy call's hidden-side masks
    assert all((m.sum(1) == 4).all() for m in hidden_masks)


def test_noise_selects_on_noisy_scores_but_the_gradient_uses_the_noiseless_ones(monkeypatch):
    """With the noise drawn as a fixed tensor, the output equals a noiseless layer whose selection is forced
    to that of scores + noise, and the router still gets gradient."""
    layer = SparseRecurrent(3, 12, router_keep=(1.0, 0.25), router_noise=2.0, seed=0, backend="reference",
                            dtype=torch.float64)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    torch.manual_seed(1)
    noise = reference.router_score_noise(layer, x)
    monkeypatch.setattr(reference, "router_score_noise", lambda *_: noise)
    y, _ = layer(x)
    y.sum().backward()
    assert layer.router.scale.grad.abs().sum() > 0
    seen = []
    original = reference.topk_mask
    monkeypatch.setattr(reference, "topk_mask", lambda s, k: seen.append(s) or original(s, k))
    with torch.no_grad():
        layer(x)
    h = torch.zeros(4, 12, dtype=torch.float64)
    scores_in, scores_h = layer.router(x[0], h)
    torch.testing.assert_close(seen[1], scores_h + noise[0, :, 3:])


@pytest.mark.parametrize("backend", ["fused", "compiled", "auto"])
def test_noise_on_another_backend_raises_not_implemented_in_training(backend):
    layer = SparseRecurrent(3, 12, router_keep=0.5, router_noise=1.0, seed=0, backend=backend)
    with pytest.raises(NotImplementedError, match="reference"):
        layer(torch.randn(4, 2, 3))
    layer.eval()
    layer(torch.randn(4, 2, 3))  # acting without noise runs anywhere


def test_router_noise_is_validated():
    with pytest.raises(ValueError, match="router_noise"):
        SparseRecurrent(3, 12, router_keep=0.5, router_noise=-1.0)
