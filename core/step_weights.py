"""The step-weights contract: what a fast inference kernel may read of a layer.

A kernel outside the layer (:mod:`~sparsernn.core.infer_numba`,
:mod:`~sparsernn.core.infer_torch`) never reads the layer's modules or
parameter names; it reads one :class:`StepWeights`, got with
:func:`step_weights`, and optionally one :class:`GaussianReadout` (a linear
map over ``[h_t, x_t]`` whose trailing outputs are log-variances). Both are
frozen snapshots: later changes to the layer are not seen.

The contract
------------
- Gate order (rows of ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``),
  as ``torch.nn.LSTM`` / ``GRU`` / ``RNN``: :data:`GATE_ORDER`.
- Packed state ``(B, state_size)`` laid out as ``[h | c | t]``: ``h (H)``,
  ``c (H)`` for the LSTM only, ``t`` (the time index, one float) for the rhythm
  gate only (:attr:`StepWeights.state_layout`).
- Weights are the effective ones (masks multiplied in).
- The switch opens a neuron where its pre-activation ``a > 0``; a closed neuron
  keeps ``h`` (and ``c``) exactly. Event gate:
  ``a = event_weight_x x + event_weight_h ⊙ h_{t-1} + event_bias``. Rhythm gate, with
  ``t`` the time index the step reads (then ``t + 1`` is stored):
  ``a = rhythm_offset + sum_k rhythm_amplitude[:, k] sin(t rhythm_omega[:, k] + rhythm_phase[:, k])``.
- Layers with routed channels have no static step weights (the router picks
  channels per sample and step): :func:`step_weights` refuses them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

GATE_ORDER = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "elman": ("tanh",)}
"""Order of the gate blocks (``H`` rows each) in the weights and biases, per cell."""


def _snapshot(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone()


@dataclass(frozen=True)
class StepWeights:
    """One unrouted layer's step, as data (see the module's contract).

    Attributes
    ----------
    cell : {"gru", "lstm", "elman"}
    update_gate : {None, "event", "rhythm"}
    input_size, hidden_size : int
    weight_ih : tensor of shape (k*H, I)
    bias_ih : tensor of shape (k*H,)
    weight_hh : tensor of shape (k*H, H)
    bias_hh : tensor of shape (k*H,)
    event_weight_x : tensor of shape (H, I) or None
    event_weight_h, event_bias : tensor of shape (H,) or None
        The event gate's parameters (None without an event gate).
    rhythm_omega, rhythm_phase, rhythm_amplitude : tensor of shape (H, K) or None
    rhythm_offset : tensor of shape (H,) or None
        The rhythm gate's parameters (None without a rhythm gate); ``rhythm_omega``
        is the shared frequencies broadcast to every neuron.
    """

    cell: str
    update_gate: str | None
    input_size: int
    hidden_size: int
    weight_ih: torch.Tensor
    bias_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_hh: torch.Tensor
    event_weight_x: torch.Tensor | None = None
    event_weight_h: torch.Tensor | None = None
    event_bias: torch.Tensor | None = None
    rhythm_omega: torch.Tensor | None = None
    rhythm_phase: torch.Tensor | None = None
    rhythm_amplitude: torch.Tensor | None = None
    rhythm_offset: torch.Tensor | None = None

    @property
    def gate_order(self) -> tuple[str, ...]:
        """The gate blocks of the weights, in order (:data:`GATE_ORDER`)."""
        return GATE_ORDER[self.cell]

    @property
    def state_layout(self) -> tuple[tuple[str, int], ...]:
        """``(name, width)`` of each part of the packed state, in order: ``h``, then ``c``
        (LSTM), then ``t`` (rhythm gate)."""
        H = self.hidden_size
        return ((("h", H),) + ((("c", H),) if self.cell == "lstm" else ())
                + ((("t", 1),) if self.update_gate == "rhythm" else ()))

    @property
    def state_size(self) -> int:
        """Width of the packed state."""
        return sum(width for _, width in self.state_layout)

    def split_state(self, state):
        """``state (B, state_size)`` (tensor or array) → views ``h (B, H)``, ``c (B, H)`` or None,
        ``t (B,)`` or None."""
        H = self.hidden_size
        c = state[:, H:2 * H] if self.cell == "lstm" else None
        t = state[:, -1] if self.update_gate == "rhythm" else None
        return state[:, :H], c, t

    def rhythm_preactivation(self, time: torch.Tensor) -> torch.Tensor:
        """The rhythm gate's pre-activation ``(B, H)`` at time indices ``time (B,)``."""
        angle = time[:, None, None] * self.rhythm_omega + self.rhythm_phase
        return self.rhythm_offset + (self.rhythm_amplitude * torch.sin(angle)).sum(-1)


def step_weights(layer: "SparseRecurrent") -> StepWeights:
    """The :class:`StepWeights` of ``layer`` now (a detached copy).

    Raises
    ------
    ValueError
        If ``layer`` routes channels (``router_keep``): its step has no static weights.
    """
    if layer.router is not None:
        raise ValueError(f"layer routes channels (router_keep={layer.router_keep}): the fast inference steppers "
                         f"need static step weights; run the layer itself")
    w_ih, w_hh = layer.effective_weights()
    extra = layer.gate.step_parameters() if layer.gate is not None else {}  # always-open neurons folded in
    return StepWeights(layer.cell, layer.update_gate, layer.input_size, layer.hidden_size, _snapshot(w_ih),
                       _snapshot(layer.bias_ih), _snapshot(w_hh), _snapshot(layer.bias_hh),
                       **{name: _snapshot(value) for name, value in extra.items()})


@dataclass(frozen=True)
class GaussianReadout:
    """A linear read-out over ``[h_t, x_t]`` whose outputs are a Gaussian's mean and log-variance.

    ``out = weight @ [h_t, x_t] + bias`` of width ``2m``: ``mean = out[:m]``,
    ``var = exp(clamp(out[m:], *log_var_range)) + min_variance``. The steppers
    apply it inside their loop.

    Attributes
    ----------
    weight : tensor of shape (2m, H + I)
    bias : tensor of shape (2m,)
    log_var_range : (float, float)
        ``(low, high)`` clamp of the log-variance, ``low < high``.
    min_variance : float >= 0
        Floor added to the variance.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    log_var_range: tuple[float, float]
    min_variance: float

    def __post_init__(self) -> None:
        if not isinstance(self.weight, torch.Tensor) or self.weight.dim() != 2 or self.weight.shape[0] % 2:
            raise ValueError(f"weight must be a tensor of shape (2m, H + I); got "
                             f"{tuple(getattr(self.weight, 'shape', ())) or type(self.weight).__name__}")
        if not isinstance(self.bias, torch.Tensor) or tuple(self.bias.shape) != (self.weight.shape[0],):
            raise ValueError(f"bias must be a tensor of shape ({self.weight.shape[0]},); got "
                             f"{tuple(getattr(self.bias, 'shape', ())) or type(self.bias).__name__}")
        low, high = (float(v) for v in self.log_var_range)
        if not low < high:
            raise ValueError(f"log_var_range must be (low, high) with low < high; got {self.log_var_range}")
        if not self.min_variance >= 0:
            raise ValueError(f"min_variance must be >= 0; got {self.min_variance}")
        object.__setattr__(self, "weight", _snapshot(self.weight))
        object.__setattr__(self, "bias", _snapshot(self.bias))
        object.__setattr__(self, "log_var_range", (low, high))
        object.__setattr__(self, "min_variance", float(self.min_variance))

    @property
    def n_outputs(self) -> int:
        """``m``: the width of the mean (and of the variance)."""
        return self.weight.shape[0] // 2

    def check_fits(self, weights: StepWeights) -> None:
        """Raise ValueError unless the read-out reads ``[h, x]`` of ``weights``' layer."""
        width = weights.hidden_size + weights.input_size
        if self.weight.shape[1] != width:
            raise ValueError(f"readout.weight must have H + I = {width} columns; got {self.weight.shape[1]}")

    def apply(self, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean, var`` of shape ``(..., m)`` from the layer's output ``y (..., H)`` and input ``x (..., I)``."""
        mean, log_var = torch.nn.functional.linear(torch.cat([y, x], dim=-1), self.weight, self.bias).chunk(2, -1)
        return mean, self.variance(log_var)

    def variance(self, log_var: torch.Tensor) -> torch.Tensor:
        """The variance of the read-out's log-variance outputs: ``exp(clamp(log_var)) + min_variance``."""
        return torch.exp(log_var.clamp(*self.log_var_range)) + self.min_variance
