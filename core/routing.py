"""DS-RNN channel router: per sample and step, keep the top-k input channels
and top-k hidden channels of ``[x_t, h_{t-1}]`` (an exact budget).

Scores are cheap: ``s = |z| * scale + U tanh(V z) + bias`` with a rank-``r``
context term, so the router costs ``O(r (I + H))`` per sample, not ``O((I+H)^2)``.
At initialisation ``U = 0``: the router keeps the largest-magnitude channels.

Straight-through estimator: the kept channels are multiplied by
``1 + sigmoid(s) - sigmoid(s).detach()`` (exactly 1 forward), so the gradient
reaches the scores through the kept channels only. Dropped channels get no
gradient, which keeps the backward pass as sparse as the forward.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .statistics import kept_mask

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


class ChannelRouter(nn.Module):
    """Scores the ``I + H`` channels of ``[x_t, h_{t-1}]``.

    Parameters
    ----------
    input_size, hidden_size : int
    rank : int
        Rank of the context term.
    generator : torch.Generator
        Draws the initial weights.
    """

    def __init__(self, input_size: int, hidden_size: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        width = input_size + hidden_size
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.scale = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        bound = 1.0 / math.sqrt(width)
        self.down = nn.Parameter(torch.empty(rank, width).uniform_(-bound, bound, generator=generator))
        self.up = nn.Parameter(torch.zeros(width, rank))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of shape ``(B, I)`` and ``(B, H)`` for ``x (B, I)``, ``h (B, H)``."""
        z = torch.cat([x, h], dim=-1)
        scores = z.abs() * self.scale + torch.tanh(z @ self.down.t()) @ self.up.t() + self.bias
        return scores[:, : self.input_size], scores[:, self.input_size :]


def keep_count(keep: float, width: int) -> int:
    """``ceil(keep * width)`` channels, the exact per-sample budget (at least 1)."""
    return max(1, min(width, math.ceil(keep * width - 1e-9)))


def straight_through_scale(scores: torch.Tensor) -> torch.Tensor:
    """``1 + sigmoid(s) - sigmoid(s).detach()``: exactly 1 forward, sigmoid' backward."""
    soft = torch.sigmoid(scores)
    return 1.0 + (soft - soft.detach())


@torch.no_grad()
def kept_channels(layer: "SparseRecurrent", x: torch.Tensor, state: torch.Tensor | None,
                  episode_starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which channels ``layer``'s router keeps at each step of a run over ``x (T, B, I)`` (for
    analysis: usage histograms, how masks differ between inputs or tasks), computed step by step
    by the reference loop from the state each step reads, without grad. Inputs are checked by
    :meth:`~sparsernn.core.SparseRecurrent.kept_channels`.

    Returns
    -------
    kept_input : bool tensor of shape (T, B, I)
    kept_hidden : bool tensor of shape (T, B, H)
        Exactly ``keep_count_input`` / ``keep_count_hidden`` True per row; all True for a layer
        without a router.
    """
    steps, batch = x.shape[:2]
    if layer.router is None:
        return (torch.ones(steps, batch, layer.input_size, dtype=torch.bool, device=x.device),
                torch.ones(steps, batch, layer.hidden_size, dtype=torch.bool, device=x.device))
    backend = layer.backend
    kept_in, kept_h = [], []
    state = layer.initial_state(batch) if state is None else state
    try:
        layer.backend = "reference"  # one step at a time, from the state each step reads
        for t in range(steps):
            if episode_starts is not None:
                state = state * (1.0 - episode_starts[t].to(state.dtype)).unsqueeze(1)
            h = layer.unpack_state(state)[0]
            scores_in, scores_h = layer.router(x[t], h)
            kept_in.append(kept_mask(scores_in, layer.keep_count_input))
            kept_h.append(kept_mask(scores_h, layer.keep_count_hidden))
            _, state = layer(x[t:t + 1], state, None)
    finally:
        layer.backend = backend
    return torch.stack(kept_in), torch.stack(kept_h)
