"""Each cell's step and the selective-update switch, written once for the Python paths.

The reference backend (:mod:`~sparsernn.core.reference`) calls these
functions directly; the compiled backend (:mod:`~sparsernn.core.compiled`)
hands ``torch.compile`` a function that calls them; the torch inference block
loop (:mod:`~sparsernn.core.infer_torch`) calls them too. The other fast paths
keep their own copy of the equations for reasons given in their modules (the
TorchScript loops of :mod:`~sparsernn.core.fused_loops` save per-step values
for their hand-derived backward; the C++ kernels in ``core/csrc`` and the numba
kernel of :mod:`~sparsernn.core.infer_numba` are compiled code) and are tested
equal to the reference.

Gate order, as ``torch.nn.LSTM`` / ``torch.nn.GRU`` / ``torch.nn.RNN``:
LSTM ``i, f, g, o``; GRU ``r, z, n``; Elman one block (tanh).
"""
from __future__ import annotations

import torch


def cell_step(cell: str, gx: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """One step of the cell from its projections ``gx = W_ih x + b_ih`` and
    ``gh = W_hh h + b_hh`` (``(B, k*H)`` each, ``k`` gates), as torch.nn.LSTM/GRU/RNN define it.

    Parameters
    ----------
    cell : {"gru", "lstm", "elman"}
    gx, gh : tensor of shape (B, k*H)
    h : tensor of shape (B, H)
        The state entering the step.
    c : tensor of shape (B, H) or None
        The LSTM's cell state (None for the other cells).

    Returns
    -------
    h_new : tensor of shape (B, H)
    c_new : tensor of shape (B, H) or None
        None except for the LSTM.
    """
    if cell == "lstm":
        i, f, g, o = (gx + gh).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new
    if cell == "gru":
        hidden = h.shape[1]
        r, z = torch.sigmoid(gx[:, :2 * hidden] + gh[:, :2 * hidden]).chunk(2, dim=1)
        n = torch.tanh(torch.addcmul(gx[:, 2 * hidden:], r, gh[:, 2 * hidden:]))
        return torch.lerp(n, h, z), None  # (1 - z) * n + z * h
    return torch.tanh(gx + gh), None  # elman


def switch(is_open: torch.Tensor, new: torch.Tensor, old: torch.Tensor,
           surrogate: torch.Tensor | None = None) -> torch.Tensor:
    """The selective update: ``new`` where the switch is open, ``old`` exactly where it is closed.

    Parameters
    ----------
    is_open : bool tensor of shape (B, H)
    new, old : tensor of shape (B, H)
    surrogate : tensor of shape (B, H), optional
        The straight-through surrogate (exactly 0 forward,
        :func:`~sparsernn.core.update_gates.heaviside_straight_through`); when
        given, ``surrogate * (new - old)`` is added at the open pairs so the gradient
        reaches the gate: ``dL/da = sigmoid'(a) * dL/dh_new * (new - old)`` where the
        switch is open and 0 where it is closed.

    Returns
    -------
    tensor of shape (B, H)

    Notes
    -----
    Why only at open pairs: a closed neuron's candidate ``new`` is exactly what the
    fast paths never compute (that is the saving), so no backend can know
    ``new - old`` there. Closed pairs still reach the switch through the update-rate
    term of :meth:`~sparsernn.core.layer.SparseRecurrent.aux_loss`, which uses the
    surrogate at every pair.
    """
    kept = torch.where(is_open, new, old)
    if surrogate is None:
        return kept
    return kept + torch.where(is_open, surrogate, torch.zeros_like(surrogate)) * (new - old)
