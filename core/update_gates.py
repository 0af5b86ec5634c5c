"""suRNN selective-update switches (Yin et al., arXiv 2603.02226).

A switch ``g = Heaviside(a)`` per neuron and step; a closed neuron keeps its
state exactly. The straight-through surrogate is the sigmoid:
``g = hard + sigmoid(a) - sigmoid(a).detach()``.

Two sources of the pre-activation ``a``:

- :class:`RhythmGate` — the paper's learnable schedule of the time index
  ``a_{t,i} = b_i + sum_k alpha_{ik} sin(omega_k t + phi_{ik})``.
- :class:`EventGate` — ``a_t = W x_t + w ⊙ h_{t-1} + b``: neurons open on
  informative inputs.

Always-open neurons (layer option ``always_open_fraction``): the first
``round(fraction * H)`` neurons' pre-activation is the constant
:data:`OPEN_PREACTIVATION` inside the gate modules themselves, so every backend
(reference, compiled, fused, C++, the inference steppers through
:meth:`RhythmGate.step_parameters` / :meth:`EventGate.step_parameters`) opens
them at every step without a kernel of its own, and ``sigmoid'(a)`` is exactly 0
there: they send no gradient to the gate.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: The switch pre-activation of an always-open neuron. Far above any ``|w_i h_{t-1,i}|`` the event
#: gate adds (``w_i`` starts at 0 for these neurons and gets no gradient), and ``sigmoid`` of it is
#: exactly 1 in float16, bfloat16, float32 and float64, so its straight-through gradient is exactly 0.
OPEN_PREACTIVATION = 1.0e4

#: What ``target_update_rate`` asks of the realised update rate (:func:`rate_penalty`).
UPDATE_RATE_MODES = ("ceiling", "set_point")


def always_open_mask(hidden_size: int, fraction: float) -> torch.Tensor:
    """Bool ``(H,)``: True for the first ``floor(fraction * H + 0.5)`` neurons, the always-open ones."""
    count = int(math.floor(fraction * hidden_size + 0.5))
    return torch.arange(hidden_size) < count


def gated_initial_rate(initial_update_rate: float | None, always_open: torch.Tensor) -> float | None:
    """The share of the *gated* neurons to open at initialisation so that the whole layer opens
    ``initial_update_rate`` of its neurons, the always-open ones included; None stays None.

    Raises
    ------
    ValueError
        If ``initial_update_rate`` is below the share of always-open neurons (unreachable).
    """
    if initial_update_rate is None:
        return None
    share = float(always_open.double().mean()) if always_open.numel() else 0.0
    if initial_update_rate < share - 1e-12:
        raise ValueError(f"initial_update_rate={initial_update_rate} is below the share of always-open neurons "
                         f"({int(always_open.sum())} of {always_open.numel()} = {share:.4g}, from "
                         f"always_open_fraction); lower always_open_fraction or raise initial_update_rate")
    if share >= 1.0:
        return 1.0
    return min(max((initial_update_rate - share) / (1.0 - share), 1e-6), 1.0)


def rate_penalty(rate: torch.Tensor, target: float, mode: str) -> torch.Tensor:
    """The update-rate regulariser (before its weight): ``max(0, rate - target)^2`` for
    ``mode="ceiling"`` (exactly 0, with zero gradient, at or below the target) or
    ``(rate - target)^2`` for ``mode="set_point"``."""
    excess = rate - target
    if mode == "ceiling":
        excess = excess.clamp_min(0.0)
    return excess ** 2


class _AlwaysOpen(nn.Module):
    """Holds the always-open neurons (a non-persistent buffer: it follows from the option, so a
    saved state dict is the same with or without it) and forces their pre-activations."""

    def _set_always_open(self, hidden_size: int, fraction: float) -> None:
        mask = always_open_mask(hidden_size, fraction)
        self.register_buffer("always_open", mask, persistent=False)
        self.n_always_open = int(mask.sum())

    def _force_open(self, preact: torch.Tensor) -> torch.Tensor:
        if not self.n_always_open:
            return preact
        return torch.where(self.always_open, preact.new_tensor(OPEN_PREACTIVATION), preact)


class RhythmGate(_AlwaysOpen):
    """Learnable per-neuron rhythm of the time index.

    Parameters
    ----------
    hidden_size : int
    n_frequencies : int
        ``K`` shared frequencies ``omega_k`` (learnable), initialised with
        periods spread geometrically between 2 and ``max_period`` steps.
    max_period : float
    generator : torch.Generator
    periods : sequence of float, optional
        Explicit initial periods (steps, each >= 2, checked by the layer) used instead of the
        geometric spread: ``omega_k = 2 pi / periods[k]``, so ``K = len(periods)`` and
        ``n_frequencies`` / ``max_period`` are not used (the initial-rate window covers two of the
        longest of these periods). E.g. a day and a week in rows of the series, so that with the
        time index counted from the series' first row the schedule follows the clock.
    learn_periods : bool, default True
        False registers ``omega`` as a (saved) buffer instead of a parameter: the periods stay.
    initial_update_rate : float in (0, 1], optional
        Each neuron's offset ``b_i`` is set so that it is open on this fraction of the
        time indices ``0 .. RATE_WINDOW(max_period) - 1`` (its own schedule's quantile).
        It is the share of the gated neurons (the layer turns its own rate into this
        with :func:`gated_initial_rate`).
    always_open_fraction : float in [0, 1]
        The first ``floor(fraction * H + 0.5)`` neurons are open at every time index.

    Notes
    -----
    Without ``initial_update_rate`` the offsets ``b`` start at 0 and the amplitudes at
    ``1/sqrt(K)``, so a fresh layer opens about half of its neurons at each step, a
    different half each step.
    """

    def __init__(self, hidden_size: int, n_frequencies: int, max_period: float, generator: torch.Generator,
                 initial_update_rate: float | None = None, always_open_fraction: float = 0.0,
                 periods=None, learn_periods: bool = True) -> None:
        super().__init__()
        self._set_always_open(hidden_size, always_open_fraction)
        if periods is None:
            periods = torch.logspace(math.log10(2.0), math.log10(max_period), n_frequencies)
        else:
            periods = torch.tensor([float(p) for p in periods], dtype=torch.float64)
            n_frequencies, max_period = len(periods), float(periods.max())
        omega = (2 * math.pi / periods).to(torch.get_default_dtype())
        if learn_periods:
            self.omega = nn.Parameter(omega)
        else:
            self.register_buffer("omega", omega)
        self.phase = nn.Parameter(torch.empty(hidden_size, n_frequencies).uniform_(0, 2 * math.pi, generator=generator))
        self.amplitude = nn.Parameter(torch.full((hidden_size, n_frequencies), 1.0 / math.sqrt(n_frequencies)))
        self.offset = nn.Parameter(torch.zeros(hidden_size))
        if initial_update_rate is not None:
            with torch.no_grad():
                times = torch.arange(rate_window(max_period), dtype=torch.float64)
                schedule = self.schedule(times.to(self.offset.dtype)).double()  # (W, H), offsets still 0
                # open where a > 0: the (1 - rate) quantile of each neuron's schedule sits just below 0
                threshold = torch.quantile(schedule, 1.0 - initial_update_rate, dim=0)
                self.offset.copy_(1e-6 - threshold.to(self.offset.dtype))  # a > 0 strictly at the quantile too

    def schedule(self, time: torch.Tensor) -> torch.Tensor:
        """The learnt schedule ``b_i + sum_k alpha_ik sin(omega_k t + phi_ik)``, ``(*time.shape, H)``,
        for every neuron (always-open ones too): :func:`schedule_column` of the flattened time indices,
        as the whole-call path evaluates it (the same bits)."""
        params = (self.omega, self.phase, self.amplitude, self.offset)
        return schedule_column(time.reshape(-1), params).view(*time.shape, -1)

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``a`` of shape ``(*time.shape, H)`` for time indices ``time``
        (:data:`OPEN_PREACTIVATION` for the always-open neurons)."""
        return self._force_open(self.schedule(time))

    def step_parameters(self) -> dict[str, torch.Tensor]:
        """``rhythm_omega (H, K)``, ``rhythm_phase``, ``rhythm_amplitude``, ``rhythm_offset (H,)`` whose
        schedule is :meth:`forward`'s: an always-open neuron has amplitudes 0 and offset
        :data:`OPEN_PREACTIVATION` (what the inference steppers read)."""
        amplitude, offset = self.amplitude, self.offset
        if self.n_always_open:
            amplitude = amplitude.masked_fill(self.always_open.unsqueeze(1), 0.0)
            offset = offset.masked_fill(self.always_open, OPEN_PREACTIVATION)
        return dict(rhythm_omega=self.omega.expand_as(self.phase), rhythm_phase=self.phase,
                    rhythm_amplitude=amplitude, rhythm_offset=offset)


def schedule_values(time: torch.Tensor, omega: torch.Tensor, phase: torch.Tensor, amplitude: torch.Tensor,
                    offset: torch.Tensor) -> torch.Tensor:
    """``offset + sum_k amplitude[:, k] sin(time * omega[k] + phase[:, k])`` of shape ``(*time.shape, H)``
    in torch operations: the rhythm's formula where the C++ schedule does not apply
    (:func:`schedule_column`). The frequencies sit on the outer axis (``(..., K, H)``), where the sum over
    them is a vectorised pass over ``H`` (over ``K = 4`` innermost it costs more than the sines)."""
    angle = time.unsqueeze(-1).unsqueeze(-1) * omega.unsqueeze(-1) + phase.t().contiguous()  # (..., K, H)
    return offset + (amplitude.t().contiguous() * torch.sin(angle)).sum(-2)


def rate_window(max_period: float) -> int:
    """The time indices over which :class:`RhythmGate` sets an initial update rate: at least
    1000 steps and two of its longest periods."""
    return int(max(1000, math.ceil(2 * max_period)))


def time_indices(time0: torch.Tensor, episode_starts: torch.Tensor | None, steps: int) -> torch.Tensor:
    """Time index of every step, ``(T, B)``: ``time0 (B,) + t``, restarting at 0 after a reset
    (``episode_starts (T, B)``). A group's ``time0 (G, B)`` gives ``(G, T, B)``, the resets shared."""
    if steps == 1:  # an acting / streaming step: one op, not the general path's eight
        if episode_starts is None:
            return time0.unsqueeze(-2)
        return torch.where(episode_starts.bool(), 0.0, time0.unsqueeze(-2)).to(time0.dtype)
    offsets = torch.arange(steps, device=time0.device, dtype=time0.dtype).unsqueeze(1)
    times = time0.unsqueeze(-2) + offsets
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


def _native(params: tuple):
    """The C++ schedule (``core/csrc/rhythm.cpp``) for these parameters' device and dtype, else None."""
    from .native import native_for

    return native_for(params[1])


def schedule_column(times: torch.Tensor, params: tuple) -> torch.Tensor:
    """The schedule at ``times (N,)``, ``(N, H)``, of ``params = (omega, phase, amplitude, offset)``: one
    autograd node (:class:`_Schedule`) when a gradient is wanted, else its forward alone. On a CPU in
    float32 / float64 with the C++ loops built, ``core/csrc/rhythm.cpp`` (one call each way); else
    :func:`schedule_values` (torch operations). The reference's per-step schedule and the whole-call
    one both come from here, so they have the same bits."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return _Schedule.apply(times, *params)
    native = _native(params)
    if native is not None:
        return native.rhythm_schedule(times, *params)
    return _column_values(times, params)[0]


class _Schedule(torch.autograd.Function):
    """The rhythm's schedule for a column of time indices, ``(N,) -> (N, H)``, as one autograd node.

    With the C++ loops (a CPU, float32 / float64): ``core/csrc/rhythm.cpp``'s forward (one call, the
    same code the reference's per-step schedule runs) and, unless a double backward is asked, its
    backward (one call). Otherwise: :func:`schedule_values`, once per distinct time index when there
    are at least :data:`UNIQUE_FROM` (a training batch's sequences share indices early in training,
    when episodes are short), without autograd storing the ``(N, K, H)`` angles; backward: the
    derivatives through the sum formula ``sin(w t + p) = sin(w t) cos p + cos(w t) sin p``: one
    ``(H, N) @ (N, 4K)`` product instead of element-wise passes over ``(N, K, H)`` (equal to
    autograd's up to rounding: a few ulp of ``w t``), made of torch operations, so it is
    differentiable in turn (the C++ backward computes the same sums)."""

    @staticmethod
    def forward(ctx, times, omega, phase, amplitude, offset):
        params = (omega, phase, amplitude, offset)
        ctx.native = _native(params)
        if ctx.native is not None:
            values, inverse = ctx.native.rhythm_schedule(times, *params), None
        else:
            values, times, inverse = _column_values(times, params)
        ctx.save_for_backward(times, inverse, omega, phase, amplitude)
        return values

    @staticmethod
    def backward(ctx, grad):
        times, inverse, omega, phase, amplitude = ctx.saved_tensors
        if ctx.native is not None and not torch.is_grad_enabled():  # no double backward asked: one C++ call
            return None, *ctx.native.rhythm_schedule_backward(grad, times, omega, phase, amplitude)
        if inverse is not None:  # sum the gradients of each distinct time index
            grad = grad.new_zeros(times.shape[0], grad.shape[1]).index_add_(0, inverse, grad)
        return None, *_Schedule.sum_formula_grads(grad, times, omega, phase, amplitude)

    @staticmethod
    def backward_of(grad, times, omega, phase, amplitude, offset) -> tuple:
        """``(d_omega, d_phase, d_amplitude, d_offset)`` from the gradient ``(N, H)`` of the schedule at
        ``times (N,)``, without autograd (the fused group's node, :mod:`~sparsernn.core.fused_gates`):
        the C++ backward where it applies, else the sum formula."""
        native = _native((omega, phase, amplitude, offset))
        if native is not None:
            return tuple(native.rhythm_schedule_backward(grad, times, omega, phase, amplitude))
        return _Schedule.sum_formula_grads(grad, times, omega, phase, amplitude)

    @staticmethod
    def sum_formula_grads(grad, times, omega, phase, amplitude) -> tuple:
        """The backward through the sum formula in torch operations (differentiable in turn)."""
        base = times.unsqueeze(-1) * omega  # (N, K)
        sin_b, cos_b = torch.sin(base), torch.cos(base)
        t = times.unsqueeze(-1)
        basis = torch.cat([sin_b, cos_b, t * sin_b, t * cos_b], 1)  # (N, 4K)
        s, c, ts, tc = (grad.t() @ basis).chunk(4, 1)  # each (H, K): sum over N of grad * basis
        cos_p, sin_p = torch.cos(phase), torch.sin(phase)
        d_amplitude = cos_p * s + sin_p * c  # sum_n g sin(w t + p)
        d_phase = amplitude * (cos_p * c - sin_p * s)  # sum_n g amp cos(w t + p)
        d_omega = (amplitude * (cos_p * tc - sin_p * ts)).sum(0)  # sum_n,h g amp t cos(w t + p)
        return d_omega, d_phase, d_amplitude, grad.sum(0)


def rhythm_preactivations(gate: "RhythmGate", time0: torch.Tensor, episode_starts: torch.Tensor | None,
                          steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rhythm's pre-activations for a whole call, ``(T, B, H)``, and the time index after the
    call, ``(B,)``. Evaluated at every (step, sample) as one autograd node (:class:`_Schedule`):
    the same values as ``gate(times)`` (always-open neurons forced open), with a backward of a few
    small products."""
    times = time_indices(time0, episode_starts, steps)
    pre = schedule_column(times.reshape(-1), (gate.omega, gate.phase, gate.amplitude, gate.offset))
    return gate._force_open(pre.view(*times.shape, -1)), times[-1] + 1


class EventGate(_AlwaysOpen):
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
        ``b = 0``: about half open. The share of the gated neurons, as for :class:`RhythmGate`.
    always_open_fraction : float in [0, 1]
        The first ``floor(fraction * H + 0.5)`` neurons are open at every step: their
        ``W x + b`` is replaced by :data:`OPEN_PREACTIVATION` and their ``w`` starts at 0
        (and gets no gradient, the surrogate's slope being 0 there).
    """

    def __init__(self, input_size: int, hidden_size: int, generator: torch.Generator,
                 initial_update_rate: float | None = None, always_open_fraction: float = 0.0) -> None:
        super().__init__()
        self._set_always_open(hidden_size, always_open_fraction)
        bound = 1.0 / math.sqrt(input_size)
        self.weight_x = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound, generator=generator))
        weight_h = torch.empty(hidden_size).uniform_(-0.5, 0.5, generator=generator)
        self.weight_h = nn.Parameter(weight_h.masked_fill(self.always_open, 0.0))
        bias = 0.0
        if initial_update_rate is not None:  # rate 1.0: the 1 - 1e-6 quantile, about 4.75 standard deviations
            bias = float(torch.special.ndtri(torch.tensor(min(initial_update_rate, 1 - 1e-6), dtype=torch.float64)))
            bias /= math.sqrt(3.0)
        self.bias = nn.Parameter(torch.full((hidden_size,), bias))

    def input_part(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` for ``x (..., I)`` → ``(..., H)``: computable for all steps at once
        (:data:`OPEN_PREACTIVATION` for the always-open neurons)."""
        return self._force_open(torch.nn.functional.linear(x, self.weight_x, self.bias))  # one op (addmm)

    def step_parameters(self) -> dict[str, torch.Tensor]:
        """``event_weight_x (H, I)``, ``event_weight_h (H,)``, ``event_bias (H,)`` that compute
        :meth:`forward`: an always-open neuron has a zero row and bias :data:`OPEN_PREACTIVATION`
        (what the inference steppers read)."""
        weight_x, bias = self.weight_x, self.bias
        if self.n_always_open:
            weight_x = weight_x.masked_fill(self.always_open.unsqueeze(1), 0.0)
            bias = bias.masked_fill(self.always_open, OPEN_PREACTIVATION)
        return dict(event_weight_x=weight_x, event_weight_h=self.weight_h, event_bias=bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(B, H)`` for ``x (B, I)``, ``h (B, H)``."""
        return self.input_part(x) + self.weight_h * h


def heaviside_straight_through(preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hard, surrogate)``: ``hard = (a > 0)`` as a bool tensor, and
    ``surrogate = sigmoid(a) - sigmoid(a).detach()`` (exactly 0 forward) that
    carries the gradient."""
    soft = torch.sigmoid(preact)
    return preact > 0, soft - soft.detach()
