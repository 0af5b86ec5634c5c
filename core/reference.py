"""The reference backend: plain PyTorch, one obvious line per equation.

It is the oracle that every fast path is tested against, and is never
optimised: it loops over time, multiplies masks in, and computes every
projection at every step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .routing import straight_through_scale
from .statistics import make_trace
from .update_gates import heaviside_straight_through

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``(B, W)`` mask with exactly ``k`` True entries per row: the top-k scores."""
    return torch.zeros_like(scores, dtype=torch.bool).scatter(1, scores.topk(k, dim=1).indices, True)


def cell_step(cell: str, gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """One step of the cell from its projections ``gx = W_ih x + b_ih`` and
    ``gh = W_hh h + b_hh`` (``(B, G*H)`` each), as torch.nn.LSTM/GRU/RNN define it.

    Returns ``(h_new, c_new)``; ``c_new`` is None except for the LSTM.
    """
    if cell == "lstm":
        i, f, g, o = (gx + gh).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new
    if cell == "gru":
        xr, xz, xn = gx.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None
    return torch.tanh(gx + gh), None  # elman


def reference_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
                      time: torch.Tensor | None, episode_starts: torch.Tensor | None):
    """Run the layer over ``x (T, B, I)`` from state ``h (B, H)``, ``c (B, H)``
    (LSTM) and ``time (B,)`` (rhythm gate).

    Returns ``y (T, B, H)``, the final ``(h, c, time)`` and the call's trace
    (:func:`~sparsernn.core.statistics.make_trace`).
    """
    w_ih, w_hh = layer.effective_weights()
    opens, open_st, importance_in, importance_h = [], [], [], []
    outputs = []
    for t in range(x.shape[0]):
        if episode_starts is not None:
            alive = 1.0 - episode_starts[t].to(x.dtype)
            h = h * alive.unsqueeze(1)
            c = c * alive.unsqueeze(1) if c is not None else None
            time = time * alive if time is not None else None
        x_t, h_read = x[t], h
        if layer.router is not None:
            scores_in, scores_h = layer.router(x_t, h)
            x_t = x_t * topk_mask(scores_in, layer.keep_count_input) * straight_through_scale(scores_in)
            h_read = h * topk_mask(scores_h, layer.keep_count_hidden) * straight_through_scale(scores_h)
            importance_in.append(torch.sigmoid(scores_in).sum(0))
            importance_h.append(torch.sigmoid(scores_h).sum(0))
        gx = x_t @ w_ih.t() + layer.bias_ih
        gh = h_read @ w_hh.t() + layer.bias_hh
        h_new, c_new = cell_step(layer.cell, gx, gh, h, c)
        if layer.update_gate is not None:
            preact = layer.gate(time) if layer.update_gate == "rhythm" else layer.gate(x[t], h)
            is_open, surrogate = heaviside_straight_through(preact)
            h_new = torch.where(is_open, h_new, h) + surrogate * (h_new - h)
            if c is not None:
                c_new = torch.where(is_open, c_new, c) + surrogate * (c_new - c)
            opens.append(is_open.sum())
            open_st.append((is_open.to(x.dtype) + surrogate).sum())
        h, c = h_new, c_new
        time = time + 1 if time is not None else None
        outputs.append(h)
    trace = make_trace(opens, open_st, importance_in, importance_h, x.shape[0] * x.shape[1] * layer.hidden_size)
    return torch.stack(outputs), (h, c, time), trace
