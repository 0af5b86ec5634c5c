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

import torch
from torch import nn


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
