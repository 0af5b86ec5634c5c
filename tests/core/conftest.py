"""Fixtures for the core tests: a relative-error comparison that names the tensor."""
from __future__ import annotations

import pytest
import torch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / max(||expected||, tiny)``."""
    diff = (actual.double() - expected.double()).norm().item()
    return diff / max(expected.double().norm().item(), 1e-30)


@pytest.fixture
def assert_rel_close():
    """``check(name, actual, expected, rtol)``: fails with the tensor's name and its relative error."""

    def check(name: str, actual, expected, rtol: float) -> None:
        if expected is None or actual is None:
            assert actual is None and expected is None, f"{name}: one side is None ({actual is None}, {expected is None})"
            return
        assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        assert torch.isfinite(actual).all(), f"{name}: non-finite values"
        err = relative_error(actual, expected)
        assert err <= rtol, f"{name}: relative error {err:.3e} > {rtol:.1e}"

    return check


@pytest.fixture
def run_with_grads():
    """``run(layer, x, state, episode_starts) -> (y, final_state, {name: grad})``."""
    return _run_with_grads


def _run_with_grads(layer, x, state, episode_starts):
    """Forward + backward of a fixed random functional; returns outputs and all gradients."""
    x = x.detach().clone().requires_grad_(True)
    state = state.detach().clone().requires_grad_(True) if state is not None else None
    layer.zero_grad(set_to_none=True)
    y, final = layer(x, state, episode_starts)
    gen = torch.Generator().manual_seed(123)
    w_y = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    w_s = torch.randn(final.shape, generator=gen, dtype=y.dtype)
    loss = (y * w_y).sum() + (final * w_s).sum() + layer.aux_loss()
    loss.backward()
    grads = {"x": x.grad, "state": state.grad if state is not None else None}
    grads.update({name: p.grad for name, p in layer.named_parameters()})
    return y.detach(), final.detach(), grads
