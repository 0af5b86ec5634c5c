"""suRNN selective-update switches (Yin et al., arXiv 2603.02226).

A switch ``g = Heaviside(a)`` per neuron and step; a closed neuron keeps its
state exactly. The straight-through surrogate is the sigmoid:
``g = hard + sigmoid(a) - sigmoid(a).detach()``.

Two sources of the pre-activation ``a``:

- :class:`RhythmGate` — the paper's learnable schedule of the time index
  ``a_{t,i} = b_i + sum_k alpha_{ik} sin(omega_k t + phi_{ik})``.
- :class:`EventGate` — ``a_t = W x_t + w ⊙ h_{t-1} + b``: neurons open on
  informative inputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class RhythmGate(nn.Module):
    """Learnable per-neuron rhythm of the time index.

    Parameters
    ----------
    hidden_size : int
    n_frequencies : int
        ``K`` shared frequencies ``omega_k`` (learnable), initialised with
        periods spread geometrically between 2 and ``max_period`` steps.
    max_period : float
    generator : torch.Generator
    initial_update_rate : float in (0, 1], optional
        Each neuron's offset ``b_i`` is set so that it is open on this fraction of the
        time indices ``0 .. RATE_WINDOW(max_period) - 1`` (its own schedule's quantile).

    Notes
    -----
    Without ``initial_update_rate`` the offsets ``b`` start at 0 and the amplitudes at
    ``1/sqrt(K)``, so a fresh layer opens about half of its neurons at each step, a
    different half each step.
    """

    def __init__(self, hidden_size: int, n_frequencies: int, max_period: float, generator: torch.Generator,
                 initial_update_rate: float | None = None) -> None:
        super().__init__()
        periods = torch.logspace(math.log10(2.0), math.log10(max_period), n_frequencies)
        self.omega = nn.Parameter(2 * math.pi / periods)
        self.phase = nn.Parameter(torch.empty(hidden_size, n_frequencies).uniform_(0, 2 * math.pi, generator=generator))
        self.amplitude = nn.Parameter(torch.full((hidden_size, n_frequencies), 1.0 / math.sqrt(n_frequencies)))
        self.offset = nn.Parameter(torch.zeros(hidden_size))
        if initial_update_rate is not None:
            with torch.no_grad():
                times = torch.arange(rate_window(max_period), dtype=torch.float64)
                schedule = self(times.to(self.offset.dtype)).double()  # (W, H), offsets still 0
                # open where a > 0: the (1 - rate) quantile of each neuron's schedule sits just below 0
                threshold = torch.quantile(schedule, 1.0 - initial_update_rate, dim=0)
                self.offset.copy_(1e-6 - threshold.to(self.offset.dtype))  # a > 0 strictly at the quantile too

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``a`` of shape ``(*time.shape, H)`` for time indices ``time``."""
        return schedule_values(time, self.omega, self.phase, self.amplitude, self.offset)


def schedule_values(time: torch.Tensor, omega: torch.Tensor, phase: torch.Tensor, amplitude: torch.Tensor,
                    offset: torch.Tensor) -> torch.Tensor:
    """``offset + sum_k amplitude[:, k] sin(time * omega[k] + phase[:, k])`` of shape ``(*time.shape, H)``:
    the rhythm's one formula, shared by :meth:`RhythmGate.forward` and the whole-call path
    (:class:`_Schedule`), so both give the same bits. The frequencies sit on the outer axis
    (``(..., K, H)``), where the sum over them is a vectorised pass over ``H`` (over ``K = 4``
    innermost it costs more than the sines)."""
    angle = time.unsqueeze(-1).unsqueeze(-1) * omega.unsqueeze(-1) + phase.t().contiguous()  # (..., K, H)
    return offset + (amplitude.t().contiguous() * torch.sin(angle)).sum(-2)


def rate_window(max_period: float) -> int:
    """The time indices over which :class:`RhythmGate` sets an initial update rate: at least
    1000 steps and two of its longest periods."""
    return int(max(1000, math.ceil(2 * max_period)))


def time_indices(time0: torch.Tensor, episode_starts: torch.Tensor | None, steps: int) -> torch.Tensor:
    """Time index of every step, ``(T, B)``: ``time0 (B,) + t``, restarting at 0 after a reset."""
    if steps == 1:  # an acting / streaming step: one op, not the general path's eight
        if episode_starts is None:
            return time0.unsqueeze(0)
        return torch.where(episode_starts.bool(), 0.0, time0.unsqueeze(0)).to(time0.dtype)
    offsets = torch.arange(steps, device=time0.device, dtype=time0.dtype).unsqueeze(1)
    times = time0.unsqueeze(0) + offsets
    if episode_starts is None:
        return times
    idx = torch.arange(steps, device=time0.device).unsqueeze(1).expand_as(episode_starts)
    last_reset = torch.where(episode_starts.bool(), idx, torch.full_like(idx, -1)).cummax(0).values
    return torch.where(last_reset >= 0, (idx - last_reset).to(time0.dtype), times)


#: From this many time indices on, the whole-call path evaluates the rhythm once per distinct index.
UNIQUE_FROM = 64


def _column_values(times: torch.Tensor, params: tuple) -> tuple:
    """:func:`schedule_values` at ``times (N,)``: ``(values (N, H), distinct times, inverse or None)``."""
    inverse = None
    if times.numel() >= UNIQUE_FROM:
        times, inverse = torch.unique(times, return_inverse=True)
    values = schedule_values(times, *params)
    return (values if inverse is None else values.index_select(0, inverse)), times, inverse


class _Schedule(torch.autograd.Function):
    """:func:`schedule_values` for a column of time indices, ``(N,) -> (N, H)``, as one autograd node.

    Forward: :func:`schedule_values` itself (the reference's bits), once per distinct time index
    when there are at least :data:`UNIQUE_FROM` (a training batch's sequences share indices
    early in training, when episodes are short), without autograd storing the ``(N, K, H)``
    angles. Backward: the derivatives through the sum formula
    ``sin(w t + p) = sin(w t) cos p + cos(w t) sin p``: one ``(H, N) @ (N, 4K)`` product instead
    of element-wise passes over ``(N, K, H)`` (equal to autograd's up to rounding: a few ulp of
    ``w t``). The backward is made of torch operations, so it is differentiable in turn."""

    @staticmethod
    def forward(ctx, times, omega, phase, amplitude, offset):
        values, times, inverse = _column_values(times, (omega, phase, amplitude, offset))
        ctx.save_for_backward(times, inverse, omega, phase, amplitude)
        return values

    @staticmethod
    def backward(ctx, grad):
        times, inverse, omega, phase, amplitude = ctx.saved_tensors
        if inverse is not None:  # sum the gradients of each distinct time index
            grad = grad.new_zeros(times.shape[0], grad.shape[1]).index_add_(0, inverse, grad)
        base = times.unsqueeze(-1) * omega  # (N, K)
        sin_b, cos_b = torch.sin(base), torch.cos(base)
        t = times.unsqueeze(-1)
        basis = torch.cat([sin_b, cos_b, t * sin_b, t * cos_b], 1)  # (N, 4K)
        s, c, ts, tc = (grad.t() @ basis).chunk(4, 1)  # each (H, K): sum over N of grad * basis
        cos_p, sin_p = torch.cos(phase), torch.sin(phase)
        d_amplitude = cos_p * s + sin_p * c  # sum_n g sin(w t + p)
        d_phase = amplitude * (cos_p * c - sin_p * s)  # sum_n g amp cos(w t + p)
        d_omega = (amplitude * (cos_p * tc - sin_p * ts)).sum(0)  # sum_n,h g amp t cos(w t + p)
        return None, d_omega, d_phase, d_amplitude, grad.sum(0)


def rhythm_preactivations(gate: "RhythmGate", time0: torch.Tensor, episode_starts: torch.Tensor | None,
                          steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rhythm's pre-activations for a whole call, ``(T, B, H)``, and the time index after the
    call, ``(B,)``. Evaluated at every (step, sample) as one autograd node (:class:`_Schedule`):
    the same values as ``gate(times)``, with a backward of a few small products."""
    times = time_indices(time0, episode_starts, steps)
    params = (gate.omega, gate.phase, gate.amplitude, gate.offset)
    if torch.is_grad_enabled():
        pre = _Schedule.apply(times.reshape(-1), *params)
    else:  # acting, streaming: the same values without the autograd node
        pre = _column_values(times.reshape(-1), params)[0]
    return pre.view(*times.shape, -1), times[-1] + 1


class EventGate(nn.Module):
    """Input-driven switch pre-activation ``a_t = W x_t + w ⊙ h_{t-1} + b``.

    Parameters
    ----------
    input_size, hidden_size : int
    generator : torch.Generator
    initial_update_rate : float in (0, 1], optional
        Sets the bias so that a fresh switch opens on this fraction of inputs whose
        features have unit variance: ``W x`` then has standard deviation ``1/sqrt(3)``
        (``W ~ U(-1/sqrt(I), 1/sqrt(I))``), so ``b = Phi^-1(rate) / sqrt(3)`` (the
        ``w * h`` term is small at the start, where ``h`` is near 0). Without it,
        ``b = 0``: about half open.
    """

    def __init__(self, input_size: int, hidden_size: int, generator: torch.Generator,
                 initial_update_rate: float | None = None) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(input_size)
        self.weight_x = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound, generator=generator))
        self.weight_h = nn.Parameter(torch.empty(hidden_size).uniform_(-0.5, 0.5, generator=generator))
        bias = 0.0
        if initial_update_rate is not None:  # rate 1.0: the 1 - 1e-6 quantile, about 4.75 standard deviations
            bias = float(torch.special.ndtri(torch.tensor(min(initial_update_rate, 1 - 1e-6), dtype=torch.float64)))
            bias /= math.sqrt(3.0)
        self.bias = nn.Parameter(torch.full((hidden_size,), bias))

    def input_part(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` for ``x (..., I)`` → ``(..., H)``: computable for all steps at once."""
        return torch.nn.functional.linear(x, self.weight_x, self.bias)  # one op (addmm), forward and backward

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(B, H)`` for ``x (B, I)``, ``h (B, H)``."""
        return self.input_part(x) + self.weight_h * h


def heaviside_straight_through(preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hard, surrogate)``: ``hard = (a > 0)`` as a bool tensor, and
    ``surrogate = sigmoid(a) - sigmoid(a).detach()`` (exactly 0 forward) that
    carries the gradient."""
    soft = torch.sigmoid(preact)
    return preact > 0, soft - soft.detach()
