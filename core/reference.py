"""The reference backend: plain PyTorch, one obvious line per equation.

It is the oracle that every fast path is tested against, and is never
optimised: it loops over time, multiplies masks in, and computes every
projection at every step. The cell's equations are
:func:`~sparsernn.core.cells.cell_step` (shared with the compiled backend).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .cells import cell_step, switch
from .routing import straight_through_scale
from .statistics import kept_mask, make_trace
from .update_gates import heaviside_straight_through

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``(B, W)`` mask with exactly ``k`` True entries per row: the top-k scores; among
    equal scores the lower channel index is kept (every backend follows this rule;
    :func:`~sparsernn.core.statistics.kept_mask`)."""
    return kept_mask(scores, k)


def router_score_noise(layer: "SparseRecurrent", x: torch.Tensor) -> torch.Tensor | None:
    """The call's additive selection noise ``(T, B, I + H)``: ``router_noise`` times standard Gumbel
    noise (``-log E``, ``E ~ Exp(1)``, from torch's global generator) in training mode, else ``None``."""
    if layer.router is None or layer.router_noise == 0 or not layer.training:
        return None
    shape = (x.shape[0], x.shape[1], layer.input_size + layer.hidden_size)
    return torch.empty(shape, dtype=x.dtype, device=x.device).exponential_().log().neg() * layer.router_noise


def reference_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
                      time: torch.Tensor | None, episode_starts: torch.Tensor | None):
    """Run the layer over ``x (T, B, I)`` from state ``h (B, H)``, ``c (B, H)``
    (LSTM) and ``time (B,)`` (rhythm gate).

    Returns ``y (T, B, H)``, the final ``(h, c, time)`` and the call's trace
    (:func:`~sparsernn.core.statistics.make_trace`).
    """
    w_ih, w_hh = layer.effective_weights()
    noise = router_score_noise(layer, x)
    opens, open_st, importance_in, importance_h, selection, switches = [], [], [], [], [], []
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
            pick_in, pick_h = scores_in, scores_h
            if noise is not None:  # explore: select on noisy scores, learn through the noiseless ones
                pick_in, pick_h = scores_in + noise[t, :, :layer.input_size], scores_h + noise[t, :, layer.input_size:]
            selection.append(torch.cat([pick_in, pick_h], 1).detach())  # what channel_usage reduces
            x_t = x_t * topk_mask(pick_in, layer.keep_count_input) * straight_through_scale(scores_in)
            h_read = h * topk_mask(pick_h, layer.keep_count_hidden) * straight_through_scale(scores_h)
            importance_in.append(torch.sigmoid(scores_in).sum(0))
            importance_h.append(torch.sigmoid(scores_h).sum(0))
        gx = x_t @ w_ih.t() + layer.bias_ih
        gh = h_read @ w_hh.t() + layer.bias_hh
        h_new, c_new = cell_step(layer.cell, gx, gh, h, c)
        if layer.update_gate is not None:
            preact = layer.gate(time) if layer.update_gate == "rhythm" else layer.gate(x[t], h)
            is_open, surrogate = heaviside_straight_through(preact)
            h_new = switch(is_open, h_new, h, surrogate)
            if c is not None:
                c_new = switch(is_open, c_new, c, surrogate)
            switches.append(preact.detach())  # what update_usage reduces
            opens.append(is_open.sum())
            open_st.append((is_open.to(x.dtype) + surrogate).sum())
        h, c = h_new, c_new
        time = time + 1 if time is not None else None
        outputs.append(h)
    trace = make_trace(opens, open_st, importance_in, importance_h, x.shape[0] * x.shape[1] * layer.hidden_size,
                       selection or None, (layer.keep_count_input, layer.keep_count_hidden) if selection else None,
                       switch=switches)
    return torch.stack(outputs), (h, c, time), trace
