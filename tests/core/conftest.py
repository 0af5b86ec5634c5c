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
    gen = torch.Generator().manual_seed(123)  # drawn on the CPU, so every device sees the same functional
    w_y = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
    w_s = torch.randn(final.shape, generator=gen, dtype=y.dtype).to(y.device)
    loss = (y * w_y).sum() + (final * w_s).sum() + layer.aux_loss()
    loss.backward()
    grads = {"x": x.grad, "state": state.grad if state is not None else None}
    grads.update({name: p.grad for name, p in layer.named_parameters()})
    return y.detach(), final.detach(), grads


def random_sequence(layer, seed: int, steps: int, batch: int, reset_rate: float):
    """Fresh ``x (T, B, I)``, ``state (B, state_size)`` (rhythm time indices in [0, 50))
    and 0/1 ``episode_starts (T, B)`` for ``layer``, in its dtype and on its device (drawn on
    the CPU in float64, so every device and dtype sees the same values)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, layer.input_size, generator=gen, dtype=torch.float64)
    state = torch.randn(batch, layer.state_size, generator=gen, dtype=torch.float64)
    if layer.update_gate == "rhythm":
        state[:, -1] = torch.randint(0, 50, (batch,), generator=gen).double()
    starts = (torch.rand(steps, batch, generator=gen) < reset_rate).double()
    like = layer.weight_hh
    return x.to(like), state.to(like), starts.to(like)


#: Finite extremes the layers must take: pre-activations far past the point where every
#: sigmoid / tanh saturates (exp of them overflows in float32 and, for 1e30, in float64).
EXTREMES = (500.0, -500.0, 1e4, -1e4, 1e30, -1e30)


def extreme_sequence(layer, seed: int, steps: int, batch: int, reset_rate: float):
    """:func:`random_sequence` with spikes: about one input entry in six replaced by one of
    :data:`EXTREMES` (every one of them at least once), the rest ordinary.

    A routed layer's router gets well-separated per-channel scales first. Extreme inputs
    saturate many channels to the same magnitude (|h| = 1, two spikes of 1e30), and the
    top-k among equal or nearly equal scores is decided by the last bit, which two correct
    kernels may round differently (seen: compiled vs reference, 2 % apart in y). Distinct
    scales keep every kept set decided by the data, so backends must agree."""
    if layer.router is not None:
        with torch.no_grad():
            layer.router.scale.copy_(torch.linspace(1.0, 3.0, layer.router.scale.numel()))
    x, state, starts = random_sequence(layer, seed, steps, batch, reset_rate)
    gen = torch.Generator().manual_seed(seed + 1)
    spikes = torch.rand(x.shape, generator=gen) < 1 / 6
    spikes.view(-1)[:len(EXTREMES)] = True
    values = torch.tensor(EXTREMES, dtype=torch.float64)[torch.randint(len(EXTREMES), x.shape, generator=gen)]
    values.view(-1)[:len(EXTREMES)] = torch.tensor(EXTREMES, dtype=torch.float64)
    x = torch.where(spikes.to(x.device), values.to(x), x)
    return x, state, starts


@pytest.fixture
def assert_backend_matches_reference(assert_rel_close):
    """``check(layer, backend, x, state, starts, rtol)``: the layer on ``backend`` against its
    reference backend: outputs, final state, every gradient (aux loss included), statistics."""

    def check(layer, backend, x, state, starts, rtol):
        layer.backend = "reference"
        ref = _run_with_grads(layer, x, state, starts)
        ref_stats = layer.statistics()
        layer.backend = backend
        got = _run_with_grads(layer, x, state, starts)
        assert layer.last_backend == backend
        assert_rel_close("y", got[0], ref[0], rtol)
        assert_rel_close("final state", got[1], ref[1], rtol)
        for name, grad in ref[2].items():
            assert_rel_close(f"grad {name}", got[2][name], grad, rtol)
        stats = layer.statistics()
        # what a backend computes is its own business (the selective loops skip closed neurons);
        # every other statistic is the layer's and must agree
        assert 0 <= stats.pop("computed_fraction") <= 1 and ref_stats.pop("computed_fraction") == 1.0
        assert stats == pytest.approx(ref_stats)

    return check


@pytest.fixture
def reference_masks(monkeypatch):
    """A list that collects every top-k mask the reference backend builds (per step: input, then
    hidden, each ``(B, width)``), for tests that compare a backend's selections with it."""
    import sparsernn.core.reference as reference

    masks = []
    original = reference.topk_mask

    def recording(scores, k):
        mask = original(scores, k)
        masks.append(mask)
        return mask

    monkeypatch.setattr(reference, "topk_mask", recording)
    return masks
