"""A layer and its Gaussian read-out as a torch block loop, for blocks of many streams.

The general inference path, the layer's fused loop followed by the read-out
(:func:`~sparsernn.core.inference.fused_inference`), derives the effective
weights on each call and applies the read-out to all T outputs after the loop,
on arrays of T * B rows (tens of MB for a block of 100 steps of 1000 streams)
that fall out of the caches. :class:`TorchBlockStepper` takes the
:class:`~sparsernn.core.step_weights.StepWeights` once, at construction, and
does the input projection and the read-out inside the loop, on ``(B, .)``
tensors that stay in cache (in development profiling, about half the time of
the fused path for that block). The cell is
:func:`~sparsernn.core.cells.cell_step`, the reference's; it is tested equal to
the layer (``tests/core/test_inference_steppers.py``).
"""
from __future__ import annotations

import torch

from .cells import cell_step, switch
from .step_weights import GaussianReadout, StepWeights


def _weight(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float32).contiguous().clone()


def _project(bias: torch.Tensor, x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight_t`` for ``x (B, d)``; one broadcast multiply when d == 1 (a K=1 GEMM is slower)."""
    if x.shape[1] == 1:
        return torch.addcmul(bias, x, weight_t[0])
    return torch.addmm(bias, x, weight_t)


class TorchBlockStepper:
    """A layer and its read-out over a block, for many streams at once (the ``"torch"`` inference backend).

    Parameters
    ----------
    weights : StepWeights
        The layer's step (:func:`~sparsernn.core.step_weights.step_weights`).
    readout : GaussianReadout
    """

    def __init__(self, weights: StepWeights, readout: GaussianReadout) -> None:
        readout.check_fits(weights)
        self.weights = weights
        self.cell, self.gate, self.hidden_size = weights.cell, weights.update_gate, weights.hidden_size
        # input projection (d, G) of the cell, followed for the event gate by the gate's own (d, H)
        w_in_t, b_in = weights.weight_ih.t(), weights.bias_ih
        if self.gate == "event":
            w_in_t = torch.cat([w_in_t, weights.event_weight_x.t()], dim=1)
            b_in = torch.cat([b_in, weights.event_bias])
            self.gate_h = _weight(weights.event_weight_h)
        self.w_in_t, self.b_in = _weight(w_in_t), _weight(b_in)
        self.w_hh_t, self.b_hh = _weight(weights.weight_hh.t()), _weight(weights.bias_hh)
        H = self.hidden_size
        self.head_h_t, self.head_u_t = _weight(readout.weight[:, :H].t()), _weight(readout.weight[:, H:].t())
        self.head_b = _weight(readout.bias)
        self.readout = readout

    @torch.inference_mode()
    def run(self, u: torch.Tensor, state: torch.Tensor):
        """Inference over ``u (T, B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns ``mean (T, B, m)``, ``var (T, B, m)`` (the read-out after each
        row) and the final state ``(B, state_size)``.
        """
        T, B, d = u.shape
        cell, gate, m = self.cell, self.gate, self.head_b.shape[0] // 2
        h, c, time = self.weights.split_state(state)
        head = torch.addmm(self.head_b, u.reshape(T * B, d), self.head_u_t).view(T, B, 2 * m)  # u-part + bias
        G = self.w_hh_t.shape[1]
        for t in range(T):
            gx = _project(self.b_in, u[t], self.w_in_t)  # (B, G [+ H for the event gate])
            gh = torch.addmm(self.b_hh, h, self.w_hh_t)  # (B, G)
            h_new, c_new = cell_step(cell, gx[:, :G] if gate == "event" else gx, gh, h, c)
            if gate is not None:
                if gate == "event":
                    is_open = torch.addcmul(gx[:, G:], self.gate_h, h) > 0
                else:
                    is_open = self.weights.rhythm_preactivation(time + t) > 0
                h_new = switch(is_open, h_new, h)
                if c is not None:
                    c_new = switch(is_open, c_new, c)
            h, c = h_new, c_new
            head[t].addmm_(h, self.head_h_t)
        parts = [h] + ([c] if c is not None else []) + ([(time + T)[:, None]] if time is not None else [])
        new_state = torch.cat(parts, dim=1) if len(parts) > 1 else h
        mean = head[..., :m]
        var = self.readout.variance(head[..., m:])
        return mean, var, new_state
