"""Property-based robustness of :class:`SparseRecurrent`'s public API.

Random good, bad and extreme constructor arguments, inputs, states, episode starts and
dtypes: every call either raises a clear ``ValueError`` / ``TypeError`` (naming the
argument) and changes nothing (parameters, buffers, ``last_backend``, ``statistics()``),
or returns finite outputs (and finite gradients) equal to the reference backend's.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sparsernn.core import SparseRecurrent

from .conftest import EXTREMES, relative_error

ARGUMENT_NAMES = ("input_size", "hidden_size", "cell", "density_ih", "density_hh", "router_keep", "router_rank",
                  "update_gate", "rhythm_frequencies", "rhythm_max_period", "target_update_rate",
                  "update_rate_weight", "router_balance_weight", "backend", "seed", "dtype")
#: Junk any argument may receive.
JUNK = st.sampled_from([None, "x", "0.5", True, False, [], (1, 2, 3), float("nan"), float("inf"), -float("inf"),
                        -1, 0, 2**70, -(2**70), 1e300, np.float32("nan"), np.bool_(True), object()])


def mostly(good, *bad):
    """``good`` about six times in seven, else one of ``bad``: most calls get past the checks."""
    return st.one_of(*([good] * (3 * len(bad))), *bad)


SIZE = mostly(st.one_of(st.integers(1, 5), st.integers(1, 5).map(np.int64)), st.integers(-3, 0), st.floats(0.5, 4),
              JUNK)
FRACTION = mostly(st.one_of(st.floats(0.05, 1.0), st.floats(0.05, 1.0).map(np.float32)), st.floats(-2, 3), JUNK)
WEIGHT = mostly(st.one_of(st.floats(0, 10), st.floats(0, 10).map(np.float64)), st.floats(-5, 0), JUNK)
ARGUMENTS = dict(
    input_size=SIZE, hidden_size=SIZE,
    cell=mostly(st.sampled_from(["lstm", "gru", "elman"]), JUNK),
    density_ih=FRACTION, density_hh=FRACTION,
    router_keep=st.one_of(st.none(), FRACTION, st.tuples(FRACTION, FRACTION)),
    router_rank=SIZE,
    update_gate=mostly(st.sampled_from([None, "rhythm", "event"]), JUNK),
    rhythm_frequencies=SIZE,
    rhythm_max_period=mostly(st.floats(2.5, 1e4), st.floats(-10, 2), JUNK),
    target_update_rate=st.one_of(st.none(), FRACTION),
    update_rate_weight=WEIGHT, router_balance_weight=WEIGHT,
    backend=mostly(st.sampled_from(["auto", "reference", "fused"]), JUNK),
    seed=mostly(st.one_of(st.none(), st.integers(0, 2**64 - 1), st.integers(0, 100).map(np.int64)), JUNK),
    dtype=mostly(st.sampled_from([None, torch.float32, torch.float64]), st.sampled_from([torch.int32, "float32"])),
)


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=ARGUMENTS))
def test_constructor_raises_clearly_or_builds_a_working_layer(kwargs):
    kwargs.setdefault("input_size", 2)
    kwargs.setdefault("hidden_size", 3)
    try:
        layer = SparseRecurrent(**kwargs)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert any(name in message for name in ARGUMENT_NAMES), f"the error names no argument: {message}"
        event(f"refused: {type(error).__name__}: {str(error)[:30]}")
        return
    event("built")
    for name in ("input_size", "hidden_size", "seed"):
        assert type(getattr(layer, name)) is int
    for name in ("density_ih", "density_hh", "update_rate_weight", "router_balance_weight"):
        assert type(getattr(layer, name)) is float and 0 <= getattr(layer, name) < math.inf
    with torch.no_grad():
        y, state = layer(torch.randn(3, 2, layer.input_size, dtype=layer.weight_hh.dtype))
    assert torch.isfinite(y).all() and torch.isfinite(state).all()


KINDS = [(cell, gate, keep) for cell in ("lstm", "gru", "elman") for gate in (None, "rhythm", "event")
         for keep in (None, 0.5)]


@functools.cache
def _layer(kind: tuple, backend: str) -> SparseRecurrent:
    cell, gate, keep = kind
    return SparseRecurrent(3, 5, cell=cell, update_gate=gate, router_keep=keep, density_hh=0.6, seed=1,
                           target_update_rate=0.5 if gate else None, router_balance_weight=0.1 if keep else 0.0,
                           dtype=torch.float64, backend=backend)


def _gradient_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / (||expected|| + 1e-7)``: relative, with an absolute floor of
    1e-15 at the tolerance 1e-8 (see the call site)."""
    return (actual.double() - expected.double()).norm().item() / (expected.double().norm().item() + 1e-7)


def _snapshot(layer: SparseRecurrent) -> tuple:
    stats = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in layer.statistics().items()}
    return ({k: v.clone() for k, v in layer.state_dict().items()}, layer.last_backend, stats)


def _assert_unchanged(layer: SparseRecurrent, before: tuple) -> None:
    params, backend, stats = _snapshot(layer)
    assert params.keys() == before[0].keys()
    assert all(torch.equal(v, before[0][k]) for k, v in params.items()), "a rejected call changed the weights"
    assert backend == before[1], "a rejected call changed last_backend"
    assert stats == before[2], "a rejected call changed statistics()"


VALUES = st.one_of(st.floats(-3, 3), st.sampled_from(EXTREMES))


@st.composite
def calls(draw, bad: bool = True):
    """A forward call, good or (with ``bad``) now and then bad in one or more ways:
    ``(kind, backend, x, state, episode_starts)``."""
    mostly_ = mostly if bad else (lambda good, *_: good)
    kind = draw(st.sampled_from(KINDS))
    backend = draw(st.sampled_from(["fused", "auto"]))
    layer = _layer(kind, "reference")
    steps, batch = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    width = draw(mostly_(st.just(3), st.integers(1, 5)))
    x_dtype = draw(mostly_(st.just(torch.float64), st.sampled_from([torch.float32, torch.float16, torch.int64])))
    values = draw(st.lists(VALUES, min_size=steps * batch * width, max_size=steps * batch * width))
    x = torch.tensor(values, dtype=torch.float64).view(steps, batch, width).to(x_dtype)
    if bad and draw(st.integers(0, 15)) == 0:
        x = x[0]  # wrong number of dimensions
    state = None
    if draw(st.booleans()):
        rows = draw(mostly_(st.just(batch), st.integers(1, 4)))
        cols = draw(mostly_(st.just(layer.state_size), st.integers(1, 12)))
        scale = draw(st.sampled_from([1.0, 1e4]))
        state = torch.randn(rows, cols, dtype=draw(mostly_(st.just(torch.float64), st.just(torch.float32)))) * scale
        if kind[1] == "rhythm" and cols == layer.state_size:
            state[:, -1] = torch.randint(0, 1000, (rows,)).to(state.dtype)
    starts = None
    if draw(st.booleans()):
        shape = draw(mostly_(st.just((steps, batch)), st.tuples(st.integers(1, 6), st.integers(1, 3))))
        allowed = draw(mostly_(st.just([0.0, 1.0]), st.just([0.0, 1.0, 2.0, -1.0, 0.5, float("nan")])))
        entries = draw(st.lists(st.sampled_from(allowed), min_size=shape[0] * shape[1],
                                max_size=shape[0] * shape[1]))
        starts = torch.tensor(entries, dtype=torch.float64).view(shape)
        if allowed == [0.0, 1.0]:
            starts = starts.to(draw(st.sampled_from([torch.float64, torch.float32, torch.bool, torch.int64])))
    return kind, backend, x, state, starts


@settings(max_examples=60, deadline=None)
@given(st.one_of(calls(), calls(bad=False)))
def test_forward_raises_clearly_or_matches_the_reference(call):
    kind, backend, x, state, starts = call
    layer = _layer(kind, backend)
    layer.zero_grad(set_to_none=True)
    before = _snapshot(layer)
    x_in = x.clone().requires_grad_(True) if x.is_floating_point() else x
    try:
        y, final = layer(x_in, state, starts)
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in ("x must", "x has", "x is on", "state", "episode_starts")), str(error)
        _assert_unchanged(layer, before)
        event(f"refused: {type(error).__name__}: {str(error)[:30]}")
        return
    event("ran and matched the reference")
    assert torch.isfinite(y).all() and torch.isfinite(final).all()
    (y.sum() + final.sum() + layer.aux_loss()).backward()
    assert torch.isfinite(x_in.grad).all()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    layer.zero_grad(set_to_none=True)
    reference = _layer(kind, "reference")
    reference.zero_grad(set_to_none=True)
    x_ref = x.clone().requires_grad_(True)
    y_ref, final_ref = reference(x_ref, state, starts)
    (y_ref.sum() + final_ref.sum() + reference.aux_loss()).backward()
    assert relative_error(y, y_ref) <= 1e-9 and relative_error(final, final_ref) <= 1e-9
    # Gradients through saturated units are sums that cancel to ~1e-11 (e.g. 1 - sigmoid(25)), whose
    # rounding differs between correct kernels by ~1e-6 relative: hence an absolute floor of 1e-15, far
    # below any gradient a wrong kernel would be off by (a missing term is off by the gradient itself).
    assert _gradient_error(x_in.grad, x_ref.grad) <= 1e-8
    for name, p in reference.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(grads[name]).all(), name
            assert _gradient_error(grads[name], p.grad) <= 1e-8, name
    reference.zero_grad(set_to_none=True)
    # what a backend computes is its own business (the selective loops skip closed neurons); every other
    # statistic is the layer's and must agree
    stats, ref_stats = layer.statistics(), reference.statistics()
    computed, ref_computed = stats.pop("computed_fraction"), ref_stats.pop("computed_fraction")
    assert ref_computed == 1.0 or ref_computed != ref_computed  # NaN where the layer's rate is
    assert 0 <= computed <= 1 or (computed != computed and ref_computed != ref_computed)
    assert stats == pytest.approx(ref_stats, nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
       values=st.lists(VALUES, min_size=12, max_size=12))
def test_default_backend_stays_finite_in_every_float_dtype(kind, dtype, values):
    """Finite inputs (up to +-1e30, which float16 cannot hold: its inputs are clamped to its
    range) give finite outputs on the default backend in float32, float16 and bfloat16."""
    cell, gate, keep = kind
    layer = SparseRecurrent(3, 5, cell=cell, update_gate=gate, router_keep=keep, seed=2, dtype=dtype)
    limit = torch.finfo(dtype).max / 8
    x = torch.tensor(values, dtype=torch.float64).clamp(-limit, limit).view(2, 2, 3).to(dtype)
    with torch.no_grad():
        y, state = layer(x)
    assert y.dtype == dtype and torch.isfinite(y).all() and torch.isfinite(state).all()
