"""The rhythm's whole-call schedule (``update_gates.rhythm_preactivations``): the same bits as the
gate's own formula at every (step, sample), and the gradient autograd gives through that formula."""
import pytest
import torch

from sparsernn.core import update_gates
from sparsernn.core.update_gates import RhythmGate, rhythm_preactivations, time_indices


def gate_and_times(steps, batch, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gate = RhythmGate(37, 3, 500.0, gen, initial_update_rate=0.3).to(dtype)
    time0 = torch.randint(0, 3000, (batch,), generator=gen).to(dtype)
    starts = (torch.rand(steps, batch, generator=gen) < 0.1).to(dtype)
    return gate, time0, starts


@pytest.mark.parametrize("steps, batch", [(1, 8), (5, 3), (32, 8)])  # below and above UNIQUE_FROM
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True])
def test_the_schedule_is_the_gates_formula_bit_for_bit(steps, batch, dtype, grad):
    gate, time0, starts = gate_and_times(steps, batch, dtype)
    for episode_starts in (starts, None):
        with torch.set_grad_enabled(grad):
            pre, after = rhythm_preactivations(gate, time0, episode_starts, steps)
        times = time_indices(time0, episode_starts, steps)
        assert torch.equal(pre, gate(times))  # equal bits: the same switches as the reference's
        assert torch.equal(after, times[-1] + 1)
        assert pre.requires_grad == grad


def test_one_step_time_indices_restart_at_a_reset():
    time0 = torch.tensor([4.0, 9.0, 0.0])
    assert time_indices(time0, torch.tensor([[0.0, 1.0, 0.0]]), 1).tolist() == [[4.0, 0.0, 0.0]]
    assert time_indices(time0, None, 1).tolist() == [[4.0, 9.0, 0.0]]


@pytest.mark.parametrize("steps, batch", [(3, 4), (32, 8)])
def test_the_schedules_gradient_is_autograds(steps, batch, monkeypatch):
    gate, time0, starts = gate_and_times(steps, batch, torch.float64, seed=1)
    times = time_indices(time0, starts, steps)
    weight = torch.randn(*times.shape, 37, dtype=torch.float64)
    params = list(gate.parameters())
    expected = torch.autograd.grad((gate(times) * weight).sum(), params)
    got = torch.autograd.grad((rhythm_preactivations(gate, time0, starts, steps)[0] * weight).sum(), params)
    for name, e, g in zip(["omega", "phase", "amplitude", "offset"], expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12, msg=name)
    monkeypatch.setattr(update_gates, "UNIQUE_FROM", 10**9)  # every index evaluated, no de-duplication
    again = torch.autograd.grad((rhythm_preactivations(gate, time0, starts, steps)[0] * weight).sum(), params)
    for e, g in zip(expected, again):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_repeated_time_indices_sum_their_gradients():
    """Eight sequences at the same time indices (early training: short episodes): one evaluation per
    index, and each index's gradient the sum over the rows that share it."""
    gate, _, _ = gate_and_times(16, 8, torch.float64)
    time0 = torch.zeros(8, dtype=torch.float64)
    weight = torch.randn(16, 8, 37, dtype=torch.float64)
    params = list(gate.parameters())
    pre, _ = rhythm_preactivations(gate, time0, None, 16)
    got = torch.autograd.grad((pre * weight).sum(), params)
    expected = torch.autograd.grad((gate(torch.arange(16.0, dtype=torch.float64)) * weight.sum(1)).sum(), params)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
