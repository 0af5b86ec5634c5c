"""``RecurrentCore``: a :class:`~sparsernn.core.SparseRecurrent` where sb3-contrib expects an ``nn.LSTM``.

sb3-contrib sizes its state buffers from ``lstm.num_layers`` and
``lstm.hidden_size`` and keeps each network's state as an ``(h, c)`` pair of
``(num_layers, batch, hidden_size)`` tensors. The adapter maps the core's one
packed state ``(batch, state_size)`` (``[h | c | t]``) onto that pair:

- ``num_layers`` is 1 and ``hidden_size`` is the core's ``state_size`` (the
  *state* width; the *output* width is :attr:`output_size`);
- slot 0 of the pair holds the packed state as ``(1, batch, state_size)``;
  slot 1 holds the same tensor and is ignored on input. It exists only because
  sb3-contrib's tuples have two slots.

The layer picks its own backend (its ``backend`` option; ``"auto"`` applies
:func:`~sparsernn.core.choose_backend`); :attr:`RecurrentCore.last_backend`
tells which one ran.
"""
from __future__ import annotations

import torch
from torch import nn

from sparsernn.core import SparseRecurrent

StatePair = tuple[torch.Tensor, torch.Tensor]


class RecurrentCore(nn.Module):
    """Wrap ``layer`` with the attributes and state layout that sb3-contrib reads.

    Parameters
    ----------
    layer : SparseRecurrent

    Attributes
    ----------
    layer : SparseRecurrent
    num_layers : int
        Always 1.
    input_size : int
    hidden_size : int
        The packed state's width, ``layer.state_size`` (what sb3-contrib
        allocates per environment).
    output_size : int
        ``layer.hidden_size``, the width of the outputs.
    """

    num_layers = 1

    def __init__(self, layer: SparseRecurrent) -> None:
        super().__init__()
        if not isinstance(layer, SparseRecurrent):
            raise TypeError(f"layer must be a SparseRecurrent; got {type(layer).__name__}")
        self.layer = layer
        self.input_size = layer.input_size
        self.hidden_size = layer.state_size
        self.output_size = layer.hidden_size

    @property
    def last_backend(self) -> str | None:
        """The backend that ran the layer's last call (``layer.last_backend``)."""
        return self.layer.last_backend

    @property
    def last_group_size(self) -> int:
        """How many layers ran that call as one batched loop (2 for a grouped actor and critic, else 1)."""
        return self.layer.last_group_size

    def forward(self, x: torch.Tensor, states: StatePair,
                episode_starts: torch.Tensor) -> tuple[torch.Tensor, StatePair]:
        """Run the layer over ``x (T, B, input_size)`` from ``states`` with resets at ``episode_starts (T, B)``.

        Returns ``y (T, B, output_size)`` and the new state pair.
        """
        y, state = self.layer(x, states[0][0], episode_starts)
        state = state.unsqueeze(0)
        return y, (state, state)

    def initial_states(self, batch_size: int) -> StatePair:
        """Zero state pair for ``batch_size`` sequences."""
        state = self.layer.initial_state(batch_size).unsqueeze(0)
        return state, state

    def extra_repr(self) -> str:
        return f"state_size={self.hidden_size}"
