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
        angle = time.unsqueeze(-1).unsqueeze(-1) * self.omega + self.phase  # (..., H, K)
        return self.offset + (self.amplitude * torch.sin(angle)).sum(-1)


def rate_window(max_period: float) -> int:
    """The time indices over which :class:`RhythmGate` sets an initial update rate: at least
    1000 steps and two of its longest periods."""
    return int(max(1000, math.ceil(2 * max_period)))


def time_indices(time0: torch.Tensor, episode_starts: torch.Tensor | None, steps: int) -> torch.Tensor:
    """Time index of every step, ``(T, B)``: ``time0 (B,) + t``, restarting at 0 after a reset."""
    offsets = torch.arange(steps, device=time0.device, dtype=time0.dtype).unsqueeze(1)
    times = time0.unsqueeze(0) + offsets
    if episode_starts is None:
        return times
    idx = torch.arange(steps, device=time0.device).unsqueeze(1).expand_as(episode_starts)
    last_reset = torch.where(episode_starts.bool(), idx, torch.full_like(idx, -1)).cummax(0).values
    return torch.where(last_reset >= 0, (idx - last_reset).to(time0.dtype), times)


def rhythm_preactivations(gate: "RhythmGate", time0: torch.Tensor, episode_starts: torch.Tensor | None,
                          steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rhythm's pre-activations for a whole call, ``(T, B, H)``, evaluated once per
    distinct time index, and the time index after the call, ``(B,)``."""
    times = time_indices(time0, episode_starts, steps)
    unique, inverse = torch.unique(times, return_inverse=True)
    return gate(unique)[inverse], times[-1] + 1


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
        return x @ self.weight_x.t() + self.bias

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(B, H)`` for ``x (B, I)``, ``h (B, H)``."""
        return self.input_part(x) + self.weight_h * h


def heaviside_straight_through(preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hard, surrogate)``: ``hard = (a > 0)`` as a bool tensor, and
    ``surrogate = sigmoid(a) - sigmoid(a).detach()`` (exactly 0 forward) that
    carries the gradient."""
    soft = torch.sigmoid(preact)
    return preact > 0, soft - soft.detach()
