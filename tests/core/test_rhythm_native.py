"""The C++ rhythm schedule (``core/csrc/rhythm.cpp``) against the formula in torch operations
(:func:`~sparsernn.core.update_gates.schedule_values`) and autograd's gradients of it: odd sizes,
time indices up to the thousands, float32 and float64; one time index gives the same bits alone or
among many (the reference's per-step schedule and the whole-call one must open the same switches)."""
import pytest
import torch

from sparsernn.core.native import native_for
from sparsernn.core.update_gates import _Schedule, schedule_column, schedule_values

TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


def _params(dtype, H=37, K=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    omega = (2 * torch.pi / torch.logspace(0.3, 3, K, dtype=torch.float64)).to(dtype)
    phase = (6.3 * torch.rand(H, K, generator=gen, dtype=torch.float64)).to(dtype)
    amplitude = torch.randn(H, K, generator=gen, dtype=torch.float64).to(dtype)
    offset = torch.randn(H, generator=gen, dtype=torch.float64).to(dtype)
    return [p.requires_grad_() for p in (omega, phase, amplitude, offset)]


def _native(dtype):
    native = native_for(torch.zeros((), dtype=dtype))
    if native is None:
        pytest.skip("the C++ loops are not built")
    return native


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("H, K, N", [(37, 3, 101), (1, 1, 1), (64, 4, 256), (5, 7, 3)])
def test_native_schedule_and_gradients_match_the_torch_formula(dtype, H, K, N):
    native = _native(dtype)
    params = _params(dtype, H, K)
    gen = torch.Generator().manual_seed(N)
    times = torch.randint(0, 3000, (N,), generator=gen).to(dtype)
    got = native.rhythm_schedule(times, *[p.detach() for p in params])
    expected = schedule_values(times, *params)
    torch.testing.assert_close(got, expected.detach(), rtol=TOL[dtype], atol=TOL[dtype] * 10)
    weights = torch.randn(N, H, generator=gen, dtype=torch.float64).to(dtype)
    auto = torch.autograd.grad((expected * weights).sum(), params)
    mine = native.rhythm_schedule_backward(weights, times, *[p.detach() for p in params[:3]])
    for name, a, b in zip(("omega", "phase", "amplitude", "offset"), mine, auto):
        scale = b.abs().max().clamp_min(1.0)  # d omega carries t up to 3000: compare relative to its size
        torch.testing.assert_close(a / scale, b / scale, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10,
                                   msg=lambda m, n=name: f"d {n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_time_index_gives_the_same_bits_alone_or_among_many(dtype):
    params = _params(dtype)
    times = torch.arange(0, 2000, 7).to(dtype)
    with torch.no_grad():
        whole = schedule_column(times, params)
        for i in (0, 5, 100, len(times) - 1):
            assert torch.equal(schedule_column(times[i:i + 1], params), whole[i:i + 1])
    assert torch.equal(schedule_column(times, params).detach(), whole)  # with the autograd node: same forward


def test_schedule_node_double_backward_matches_autograd():
    """A double backward takes the torch backward (differentiable); it equals autograd's on the formula."""
    params = _params(torch.float64, 11, 2)
    times = torch.arange(0.0, 40.0, dtype=torch.float64)
    def second(values):
        first = torch.autograd.grad(values.square().sum(), params[1], create_graph=True)[0]
        return torch.autograd.grad(first.sum(), params[2])[0]
    torch.testing.assert_close(second(_Schedule.apply(times, *params)), second(schedule_values(times, *params)),
                               rtol=1e-10, atol=1e-12)
