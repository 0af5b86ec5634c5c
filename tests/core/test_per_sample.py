"""Per-sample weights (core/per_sample.py) against vmap over the reference backend, in float64."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, vmap

from sparsernn.core import SparseRecurrent
from sparsernn.core.per_sample import per_sample_forward, per_sample_unsupported

RTOL = 1e-10


def make_layer(input_size, hidden, **options):
    layer = SparseRecurrent(input_size, hidden, cell="gru", backend="reference", seed=3, dtype=torch.float64,
                            **options)
    return layer.eval().requires_grad_(False)


def stacked_params(layer, samples, scale, gen):
    """Each sample: the layer's parameters plus its own noise (``scale`` times standard normal)."""
    return {name: p.detach().expand(samples, *p.shape).clone()
            + scale * torch.randn(samples, *p.shape, generator=gen, dtype=p.dtype)
            for name, p in layer.named_parameters()}


def reference(layer, params, x, state):
    def one(p, x1, s1):
        y, s = functional_call(layer, p, (x1[:, None], s1[None]))
        return y[:, 0], s[0]

    return vmap(one, in_dims=(0, 1, 0), out_dims=(1, 0))(params, x, state)


def run_both(layer, params, x, state, seed=0):
    """Outputs, final state and gradients (params, x, state) of a random loss, per path."""
    gen = torch.Generator().manual_seed(seed + 100)
    wy = torch.randn(x.shape[0], x.shape[1], layer.hidden_size, generator=gen, dtype=x.dtype)
    ws = torch.randn(state.shape, generator=gen, dtype=x.dtype)
    out = {}
    for name, fn in (("fast", per_sample_forward), ("vmap", reference)):
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        xl, sl = x.clone().requires_grad_(), state.clone().requires_grad_()
        y, s = fn(layer, leaves, xl, sl)
        loss = (y * wy).sum() + (s * ws).sum() + 0.5 * (y ** 2).sum()
        grads = torch.autograd.grad(loss, [*leaves.values(), xl, sl])
        out[name] = dict(y=y.detach(), state=s.detach(), x_grad=grads[-2], state_grad=grads[-1],
                         **{f"grad.{k}": g for k, g in zip(leaves, grads[:-2])})
    return out["fast"], out["vmap"]


CASES = [  # (T, S, I, H, options)
    (12, 7, 3, 8, {}),
    (12, 7, 3, 8, dict(update_gate="event")),
    (1, 1, 1, 1, dict(update_gate="event")),
    (40, 1, 2, 33, dict(update_gate="event")),
    (40, 7, 1, 33, dict(update_gate="event", density_ih=0.5, density_hh=0.25)),
    (9, 5, 4, 16, dict(density_hh=0.5)),
    (9, 5, 4, 16, dict(update_gate="event", always_open_fraction=0.25)),
    (9, 5, 2, 6, dict(update_gate="event", always_open_fraction=1.0)),
    (1, 7, 3, 1, {}),
    (20, 3, 2, 12, dict(update_gate="event", initial_update_rate=0.1)),
]


@pytest.mark.parametrize("T, S, I, H, options", CASES)
@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])  # random, large and extreme (saturating) inputs and weights
def test_equals_vmap_reference(assert_rel_close, T, S, I, H, options, scale):
    layer = make_layer(I, H, **options)
    gen = torch.Generator().manual_seed(T * 1000 + S * 10 + H)
    params = stacked_params(layer, S, 0.1 * scale, gen)
    x = scale * torch.randn(T, S, I, generator=gen, dtype=torch.float64)
    state = torch.randn(S, layer.state_size, generator=gen, dtype=torch.float64).tanh()
    fast, ref = run_both(layer, params, x, state)
    assert fast.keys() == ref.keys()
    for key in ref:
        assert_rel_close(key, fast[key], ref[key], RTOL)
    if options.get("update_gate") == "event" and T > 1:
        assert ref["grad.gate.bias"].abs().sum() > 0 or options.get("always_open_fraction") == 1.0


def test_masked_entries_get_no_gradient():
    layer = make_layer(3, 8, density_ih=0.5, density_hh=0.25, update_gate="event")
    gen = torch.Generator().manual_seed(1)
    params = {k: v.requires_grad_() for k, v in stacked_params(layer, 4, 0.2, gen).items()}
    y, s = per_sample_forward(layer, params, torch.randn(6, 4, 3, generator=gen, dtype=torch.float64),
                              torch.zeros(4, 8, dtype=torch.float64))
    g_ih, g_hh = torch.autograd.grad(y.sum() + s.sum(), [params["weight_ih"], params["weight_hh"]])
    assert (g_ih[:, ~layer.mask_ih] == 0).all() and (g_hh[:, ~layer.mask_hh] == 0).all()
    assert (g_ih[:, layer.mask_ih] != 0).any()


def test_one_step_calls_give_the_same_bits_as_one_call():
    layer = make_layer(2, 8, update_gate="event")
    gen = torch.Generator().manual_seed(2)
    params = stacked_params(layer, 3, 0.2, gen)
    x, state = torch.randn(10, 3, 2, generator=gen, dtype=torch.float64), torch.zeros(3, 8, dtype=torch.float64)
    y, s = per_sample_forward(layer, params, x, state)
    ys, h = [], state
    for t in range(10):
        y1, h = per_sample_forward(layer, params, x[t:t + 1], h)
        ys.append(y1)
    assert torch.equal(torch.cat(ys), y) and torch.equal(h, s)


def test_a_perturbed_gradient_fails_the_tolerance(assert_rel_close, monkeypatch):
    """The comparison can fail: a gradient off by one part in 1e8 at one entry is caught."""
    layer = make_layer(3, 8, update_gate="event")
    gen = torch.Generator().manual_seed(4)
    params = stacked_params(layer, 5, 0.2, gen)
    x, state = torch.randn(12, 5, 3, generator=gen, dtype=torch.float64), torch.zeros(5, 8, dtype=torch.float64)
    fast, ref = run_both(layer, params, x, state)
    for key in ("grad.weight_hh", "grad.gate.bias", "state_grad"):
        bad = fast[key].clone()
        bad.view(-1)[bad.abs().view(-1).argmax()] *= 1 + 1e-8 * bad.numel()
        with pytest.raises(AssertionError, match="relative error"):
            assert_rel_close(key, bad, ref[key], RTOL)


@pytest.mark.parametrize("options, words", [
    (dict(cell="lstm"), "cell"), (dict(cell="elman"), "cell"), (dict(update_gate="rhythm"), "rhythm"),
    (dict(router_keep=0.5), "routed"), (dict(update_gate="event", target_update_rate=0.5), "target_update_rate"),
])
def test_uncovered_layers_are_refused(options, words):
    options = dict(dict(cell="gru"), **options)
    layer = SparseRecurrent(2, 4, seed=0, dtype=torch.float64, **options)
    assert words in per_sample_unsupported(layer)
    params = {k: p.detach()[None] for k, p in layer.named_parameters()}
    with pytest.raises(NotImplementedError, match=words):
        per_sample_forward(layer, params, torch.zeros(3, 1, 2, dtype=torch.float64),
                           torch.zeros(1, layer.state_size, dtype=torch.float64))


def test_wrong_parameter_shapes_are_refused():
    layer = make_layer(2, 4, update_gate="event")
    params = {k: p.detach().expand(2, *p.shape) for k, p in layer.named_parameters()}
    x, state = torch.zeros(3, 2, 2, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    for name in ("weight_hh", "gate.weight_h"):
        bad = copy.copy(params)
        bad[name] = bad[name][:1]
        with pytest.raises(ValueError, match=name):
            per_sample_forward(layer, bad, x, state)
        bad.pop(name)
        with pytest.raises(ValueError, match=name):
            per_sample_forward(layer, bad, x, state)
