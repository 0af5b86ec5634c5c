"""A torch inference loop for blocks of many streams (the stream scorer's large-block path).

The general inference path, :func:`~sparsernn.detectors.forecaster.fast_forward`,
derives the effective weights on each call and applies the head to all T
outputs after the loop, on arrays of T * B rows (tens of MB for a block of 100
steps of 1000 streams) that fall out of the caches. :class:`TorchBlockStep`
takes the weights once, at construction, and does the input projection and the
head inside the loop, on ``(B, .)`` tensors that stay in cache (in development
profiling, about half the time of ``fast_forward`` for that block). It computes
the mathematics of ``fast_forward`` (summed in another order) and is tested
equal to the core layer.
Layers with routed channels are not supported (:func:`supports_torch_step`).
"""
from __future__ import annotations

import torch

from .forecaster import LOG_VAR_RANGE, GaussianForecaster


def supports_torch_step(model: GaussianForecaster) -> bool:
    """Whether :class:`TorchBlockStep` can run ``model`` (no routed channels)."""
    return model.layer.router is None


def _weight(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float32).contiguous().clone()


def _project(bias: torch.Tensor, x: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight_t`` for ``x (B, d)``; one broadcast multiply when d == 1 (a K=1 GEMM is slower)."""
    if x.shape[1] == 1:
        return torch.addcmul(bias, x, weight_t[0])
    return torch.addmm(bias, x, weight_t)


class TorchBlockStep:
    """The forecaster's inference over a block, for many streams at once.

    Parameters
    ----------
    model : GaussianForecaster
        Its weights are copied now; later changes to the model are not seen.
    """

    def __init__(self, model: GaussianForecaster) -> None:
        layer = model.layer
        if layer.router is not None:
            raise ValueError("TorchBlockStep does not support routed layers (router_keep)")
        self.cell, self.gate, self.hidden_size = layer.cell, layer.update_gate, layer.hidden_size
        w_ih, w_hh = layer.effective_weights()
        # input projection (d, G) of the cell, followed for the event gate by the gate's own (d, H)
        w_in_t, b_in = w_ih.t(), layer.bias_ih
        if self.gate == "event":
            w_in_t = torch.cat([w_in_t, layer.gate.weight_x.t()], dim=1)
            b_in = torch.cat([b_in, layer.gate.bias])
            self.gate_h = _weight(layer.gate.weight_h)
        elif self.gate == "rhythm":
            self.rhythm = layer.gate
        self.w_in_t, self.b_in = _weight(w_in_t), _weight(b_in)
        self.w_hh_t, self.b_hh = _weight(w_hh.t()), _weight(layer.bias_hh)
        H = self.hidden_size
        self.head_h_t, self.head_u_t = _weight(model.head.weight[:, :H].t()), _weight(model.head.weight[:, H:].t())
        self.head_b = _weight(model.head.bias)
        self.min_variance = float(model.min_variance)

    @torch.inference_mode()
    def run(self, u: torch.Tensor, state: torch.Tensor):
        """Inference over ``u (T, B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns ``mean (T, B, d)``, ``var (T, B, d)`` (forecasts of the step
        after each row) and the final state ``(B, state_size)``, as
        :func:`~sparsernn.detectors.forecaster.fast_forward` does.
        """
        T, B, d = u.shape
        H, cell, gate = self.hidden_size, self.cell, self.gate
        h = state[:, :H]
        c = state[:, H: 2 * H] if cell == "lstm" else None
        time = state[:, -1] if gate == "rhythm" else None
        head = torch.addmm(self.head_b, u.reshape(T * B, d), self.head_u_t).view(T, B, 2 * d)  # u-part + bias
        G = self.w_hh_t.shape[1]
        for t in range(T):
            gx = _project(self.b_in, u[t], self.w_in_t)  # (B, G [+ H for the event gate])
            gh = torch.addmm(self.b_hh, h, self.w_hh_t)  # (B, G)
            if cell == "gru":
                rz = torch.sigmoid(gx[:, : 2 * H] + gh[:, : 2 * H])
                n = torch.tanh(torch.addcmul(gx[:, 2 * H: G], rz[:, :H], gh[:, 2 * H:]))
                h_new, c_new = torch.lerp(n, h, rz[:, H:]), None
            elif cell == "lstm":
                i, f, gg, o = (gx[:, :G] + gh).chunk(4, dim=1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
            else:
                h_new, c_new = torch.tanh(gx[:, :G] + gh), None
            if gate is not None:
                if gate == "event":
                    is_open = torch.addcmul(gx[:, G:], self.gate_h, h) > 0
                else:
                    is_open = self.rhythm(time + t) > 0
                h_new = torch.where(is_open, h_new, h)
                if c is not None:
                    c_new = torch.where(is_open, c_new, c)
            h, c = h_new, c_new
            head[t].addmm_(h, self.head_h_t)
        parts = [h] + ([c] if c is not None else []) + ([(time + T)[:, None]] if time is not None else [])
        new_state = torch.cat(parts, dim=1) if len(parts) > 1 else h
        mean = head[..., :d]
        var = torch.exp(head[..., d:].clamp(*LOG_VAR_RANGE)) + self.min_variance
        return mean, var, new_state
