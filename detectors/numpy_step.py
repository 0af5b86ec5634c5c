"""A NumPy copy of the forecaster's inference step, for a handful of streams.

For one stream, a recurrent step is a few dozen operations on vectors of 32
numbers; each torch call costs several microseconds of dispatch, a NumPy call
about one. :class:`NumpyForecasterStep` holds the forecaster's effective
weights as float32 arrays (taken once, at construction) and computes exactly
the mathematics of :func:`~sparsernn.detectors.forecaster.fast_forward`; the
stream scorer uses it for blocks of at most :data:`NUMPY_MAX_STREAMS` streams.
It is tested equal to the core layer. Layers with routed channels are not
supported (:func:`supports_numpy_step`).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.special import expit

from .forecaster import LOG_VAR_RANGE, GaussianForecaster

NUMPY_MAX_STREAMS = 16
"""Blocks with at most this many streams step in NumPy; larger ones in torch."""


def supports_numpy_step(model: GaussianForecaster) -> bool:
    """Whether :class:`NumpyForecasterStep` can run ``model`` (no routed channels)."""
    return model.layer.router is None


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).cpu().numpy().copy()


class NumpyForecasterStep:
    """The forecaster's step in NumPy (float32).

    Parameters
    ----------
    model : GaussianForecaster
        Its weights are copied now; later changes to the model are not seen.
    """

    def __init__(self, model: GaussianForecaster) -> None:
        layer = model.layer
        if layer.router is not None:
            raise ValueError("NumpyForecasterStep does not support routed layers (router_keep)")
        self.cell, self.gate, self.hidden_size = layer.cell, layer.update_gate, layer.hidden_size
        w_ih, w_hh = layer.effective_weights()
        self.w_ih_t, self.w_hh_t = _array(w_ih.t()), _array(w_hh.t())
        self.b_ih, self.b_hh = _array(layer.bias_ih), _array(layer.bias_hh)
        if self.gate == "event":
            self.gate_w_t, self.gate_b = _array(layer.gate.weight_x.t()), _array(layer.gate.bias)
            self.gate_h = _array(layer.gate.weight_h)
        elif self.gate == "rhythm":
            g = layer.gate
            self.omega, self.phase = _array(g.omega), _array(g.phase)
            self.amplitude, self.offset = _array(g.amplitude), _array(g.offset)
        self.head_w_t, self.head_b = _array(model.head.weight.t()), _array(model.head.bias)
        self.min_variance = np.float32(model.min_variance)
        self.n_channels = model.n_channels

    def step(self, u: np.ndarray, state: np.ndarray):
        """One step for ``u (B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns the new state ``(B, state_size)`` and the forecast ``mean, var``
        (each ``(B, d)``) of the next point.
        """
        H = self.hidden_size
        h = state[:, :H]
        gx = u @ self.w_ih_t + self.b_ih
        gh = h @ self.w_hh_t + self.b_hh
        c = c_new = None
        if self.cell == "gru":
            rz = expit(gx[:, : 2 * H] + gh[:, : 2 * H])
            n = np.tanh(gx[:, 2 * H:] + rz[:, :H] * gh[:, 2 * H:])
            h_new = n + rz[:, H:] * (h - n)
        elif self.cell == "lstm":
            c = state[:, H: 2 * H]
            g = gx + gh
            c_new = expit(g[:, H: 2 * H]) * c + expit(g[:, :H]) * np.tanh(g[:, 2 * H: 3 * H])
            h_new = expit(g[:, 3 * H:]) * np.tanh(c_new)
        else:
            h_new = np.tanh(gx + gh)
        time = None
        if self.gate == "event":
            is_open = (u @ self.gate_w_t + self.gate_b + self.gate_h * h) > 0
        elif self.gate == "rhythm":
            time = state[:, -1]
            angle = time[:, None, None] * self.omega + self.phase
            is_open = (self.offset + (self.amplitude * np.sin(angle)).sum(-1)) > 0
            time = time + np.float32(1.0)
        if self.gate is not None:
            h_new = np.where(is_open, h_new, h)
            if c is not None:
                c_new = np.where(is_open, c_new, c)
        parts = [h_new] + ([c_new] if c_new is not None else []) + ([time[:, None]] if time is not None else [])
        new_state = np.concatenate(parts, axis=1) if len(parts) > 1 else h_new
        out = np.concatenate([h_new, u], axis=1) @ self.head_w_t + self.head_b
        d = self.n_channels
        var = np.exp(np.clip(out[:, d:], *LOG_VAR_RANGE)) + self.min_variance
        return new_state.astype(np.float32, copy=False), out[:, :d], var
