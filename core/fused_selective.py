"""Selective-update layers that skip the work of closed neurons (suRNN), inside the fused backend.

A closed switch keeps its neuron's state exactly, so its candidate is never
needed in the forward pass; with the straight-through rule of
:func:`~sparsernn.core.cells.switch` (gradient at open pairs only) it is not
needed in the backward pass either. On a CPU, an unrouted gated group (GRU, LSTM or
Elman) runs the C++ loops of ``core/csrc/selective_*.cpp``: per step the switches first,
then only the open (sample, neuron) pairs' candidates, organised by neuron so
each open neuron's weight rows are read once for all the samples that open it;
the backward pass spreads the open pairs' gate gradients the same way. A step
whose open share is above the cell's :data:`SELECTIVE_DENSE_ABOVE` runs as dense GEMMs
(there the gathered products would not pay; :func:`dense_above`).

A closed LSTM neuron keeps both ``h`` and ``c`` exactly (the reference's ``switch`` of each).
Routed layers and other devices run the fused loops that compute every candidate (same results,
same gradients; tested against the reference).
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Optional

import torch

from .fused_factors import refuse_double_backward
from .native import native_for

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

SELECTIVE_CELLS = ("gru", "lstm", "elman")
"""The cells the selective loops take (``core/csrc/selective_cells.h``)."""

SELECTIVE_DENSE_ABOVE = {"gru": 0.5, "lstm": 0.9, "elman": 0.5}
"""Per cell: a step whose share of open (sample, neuron) pairs is above this runs as dense GEMMs
(at H=1024, B=64 the gathered products are faster up to about this share: the GRU's by
``scripts/bench_core.py --update-rates``; the LSTM's, whose four gate rows per neuron make each sample
row read pay for more work, by ``scripts/bench_selective_small.py --dense-above``: at rate 0.5 0.9 took
0.61-0.75x the time of 0.5, at rate 0.7 0.62-0.63x; the Elman cell's gathered products and dense steps cost
about the same at rate 0.5, and lower thresholds were slower at rates 0.2-0.3) ..."""

SELECTIVE_MIN_DENSE_WIDTH = 16384
"""... when ``batch * hidden_size`` is at least this: a dense step calls ATen's GEMMs, whose fixed
cost small steps do not repay (at RL's B=8, H=64 the gathered products were faster than dense steps
at every rate up to 0.5, forward and backward)."""


def dense_above(x: torch.Tensor, hidden_size: int, cell: str = "gru") -> float:
    """The open share above which a step of a ``cell`` layer's call on ``x (T, B, I)`` runs dense (1.0: never)."""
    return SELECTIVE_DENSE_ABOVE[cell] if x.shape[1] * hidden_size >= SELECTIVE_MIN_DENSE_WIDTH else 1.0


SELECTIVE_SMALL_MAX_RATE = {"gru": 0.3, "lstm": 0.3, "elman": 1.0}
"""Per cell: below ``SELECTIVE_MIN_DENSE_WIDTH``, the selective loops run only for layers configured to
open at most this share (``target_update_rate``, else ``initial_update_rate``; neither: about half).
Measured at RL's T=32, B=8, I=4, H=64, forward+backward against the fused loops that compute every
candidate (``scripts/bench_selective_small.py``, ``docs/benchmarks_selective.md``, "LSTM and Elman"):
the GRU's selective loops are ahead up to about 0.3 (event 1.35x at 0.1, 0.91x at 0.3, 0.72x at 0.5), the
LSTM's likewise (event 1.49x at 0.1, 1.03x at 0.3, 0.81x at 0.5; rhythm 1.01x at 0.5): their per-neuron
cost is not repaid by a few samples. The Elman cell has no C++ loop that computes every candidate (its
fused loop is TorchScript), and its selective loops were ahead at every rate (1.3-2.4x up to rate 1.0)."""


def configured_rate(layer: "SparseRecurrent") -> float:
    """The share of neurons the layer is set to open: its target, else its initial rate, else 0.5."""
    for rate in (layer.target_update_rate, layer.initial_update_rate):
        if rate is not None:
            return rate
    return 0.5


def selective_native(layers: list["SparseRecurrent"], x: torch.Tensor) -> Optional[ModuleType]:
    """The C++ loops when the group's layers skip closed neurons on ``x``'s device, else None:
    a gated, unrouted GRU, LSTM or Elman layer on a CPU in float32 / float64 with the native build
    available, either large (``batch * hidden_size >= SELECTIVE_MIN_DENSE_WIDTH``) or configured sparse
    (:data:`SELECTIVE_SMALL_MAX_RATE`). A pure function of the configuration and the shapes."""
    first = layers[0]
    if first.update_gate is None or first.router is not None or first.cell not in SELECTIVE_CELLS:
        return None
    small = x.shape[1] * first.hidden_size < SELECTIVE_MIN_DENSE_WIDTH
    if small and max(configured_rate(layer) for layer in layers) > SELECTIVE_SMALL_MAX_RATE[first.cell]:
        return None
    return native_for(x)


def _split(groups: int, params: tuple) -> tuple[list[torch.Tensor], ...]:
    """``(w_ih, b_ih, w_hh, b_hh)`` lists from the group's parameters, as
    :class:`~sparsernn.core.fused._FusedSequence` takes them."""
    return tuple(list(params[i * groups:(i + 1) * groups]) for i in range(4))


class _SelectiveSequence(torch.autograd.Function):
    """``(y_1, ..., y_G, h_T, c_T, a, computed)`` of a group of gated layers that skips closed
    neurons; inputs ``cell, G, x (T, B, I), h (G, B, H), c (G, B, H) (LSTM) or None, alive, resets,
    gate_x (T, G, B, H), gate_w (G, 1, H) or None``, then each layer's ``w_ih``, ``b_ih``, ``w_hh``,
    ``b_hh``. ``c_T`` is empty but for the LSTM; ``computed (G,)``: the candidates computed per layer
    (no gradient)."""

    @staticmethod
    def forward(ctx, cell: str, groups: int, x, h, c, alive, resets, gate_x, gate_w, *params):
        native = native_for(x)
        w_ih, b_ih, w_hh, b_hh = _split(groups, params)
        threshold = dense_above(x, h.shape[2], cell)
        y, h_last, c_last, preact, computed, h_read, c_read, vals, dense = native.selective_forward(
            cell, x, h, c, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x, gate_w, True, threshold)
        ctx.cell, ctx.groups, ctx.resets, ctx.has_gate_w = cell, groups, resets, gate_w is not None
        ctx.save_for_backward(x, alive, gate_w, h_read, c_read, vals, preact, dense, *w_ih, *w_hh)
        ctx.mark_non_differentiable(computed)
        return (*y.unbind(1), h_last, c_last, preact, computed)

    @staticmethod
    def backward(ctx, *grads):
        refuse_double_backward()
        groups, lstm = ctx.groups, ctx.cell == "lstm"
        dy = torch.stack(grads[:groups], 1)  # (T, G, B, H)
        dh, dc, da_ext = grads[groups], grads[groups + 1], grads[groups + 2]
        x, alive, gate_w, h_read, c_read, vals, preact, dense, *weights = ctx.saved_tensors
        w_ih, w_hh = weights[:groups], weights[groups:]
        dx, dh0, dc0, d_w_ih, d_b_ih, d_w_hh, d_b_hh, da = native_for(dy).selective_backward(
            ctx.cell, dy, dh, dc if lstm else None, da_ext, x, h_read, c_read if lstm else None, vals, preact, dense,
            gate_w if ctx.has_gate_w else None, alive, ctx.resets, list(w_ih), list(w_hh), ctx.needs_input_grad[2])
        d_gate_w = None
        if ctx.has_gate_w and ctx.needs_input_grad[8]:
            d_gate_w = (da * h_read).sum((0, 2)).unsqueeze(1)
        return (None, None, dx if ctx.needs_input_grad[2] else None, dh0, dc0 if lstm else None, None, None, da,
                d_gate_w, *d_w_ih.unbind(0), *d_b_ih.unbind(0), *d_w_hh.unbind(0), *d_b_hh.unbind(0))


def selective_group(native: ModuleType, cell: str, x, h, c, alive, resets, gate_x, gate_w, params: tuple):
    """Run a gated group that skips closed neurons: returns the ``G`` outputs ``(T, B, H)``,
    ``h (G, B, H)``, ``c (G, B, H)`` (LSTM; else None), the switch pre-activations ``a (T, G, B, H)`` and
    the candidates computed per layer ``(G,)`` (see :class:`_SelectiveSequence` for the arguments)."""
    groups = h.shape[0]
    c = c if cell == "lstm" else None
    if torch.is_grad_enabled():
        *ys, h_last, c_last, preact, computed = _SelectiveSequence.apply(cell, groups, x, h, c, alive, resets, gate_x,
                                                                         gate_w, *params)
    else:
        w_ih, b_ih, w_hh, b_hh = _split(groups, params)
        threshold = dense_above(x, h.shape[2], cell)
        y, h_last, c_last, preact, computed = native.selective_forward(
            cell, x, h, c, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x, gate_w, False, threshold)
        ys = y.unbind(1)
    return ys, h_last, (c_last if cell == "lstm" else None), preact, computed
