"""A NumPy copy of the forecaster's inference step, for a handful of streams.

For one stream, a recurrent step is a few dozen operations on vectors of 32
numbers; each torch call costs several microseconds of dispatch, a NumPy call
about one, so the count of calls is what sets the speed. :class:`NumpyForecasterStep`
takes the forecaster's effective weights once, at construction, and stacks
every map that reads the step's input ``u`` and the previous hidden state ``h``
into one float32 matrix, so a step is one GEMM ``[u, h, 1] @ W`` followed by
the cell's nonlinearities and the head's ``h``-part. It computes the
mathematics of :func:`~sparsernn.detectors.forecaster.fast_forward` (summed in
another order) and is tested equal to the core layer; the stream scorer uses it
for blocks of at most :data:`NUMPY_MAX_STREAMS` streams. Layers with routed
channels are not supported (:func:`supports_numpy_step`).
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


def fused_weights(model: GaussianForecaster) -> np.ndarray:
    """The maps from ``[u, h, 1]`` (rows: d, H, 1) stacked by columns, float32 ``(d + H + 1, G + E + 2d)``.

    Columns: the cell's pre-activations (GRU: ``r, z`` with both biases, then the
    ``u``- and the ``h``-part of the candidate, ``4H``; LSTM ``4H``; Elman ``H``),
    the event gate's ``W x + w ⊙ h + b`` (``H``, event gate only) and the head's
    ``u``-part with its bias (``2d``).
    """
    layer, d, H = model.layer, model.n_channels, model.layer.hidden_size
    w_ih, w_hh = (_array(w) for w in layer.effective_weights())
    b_ih, b_hh = _array(layer.bias_ih), _array(layer.bias_hh)
    zeros_u, zeros_h = np.zeros((d, H), np.float32), np.zeros((H, H), np.float32)
    if layer.cell == "gru":
        blocks = [(w_ih[: 2 * H].T, w_hh[: 2 * H].T, b_ih[: 2 * H] + b_hh[: 2 * H]),
                  (w_ih[2 * H:].T, zeros_h, b_ih[2 * H:]), (zeros_u, w_hh[2 * H:].T, b_hh[2 * H:])]
    else:
        blocks = [(w_ih.T, w_hh.T, b_ih + b_hh)]
    if layer.update_gate == "event":
        gate = layer.gate
        blocks.append((_array(gate.weight_x).T, np.diag(_array(gate.weight_h)), _array(gate.bias)))
    head_w = _array(model.head.weight)
    blocks.append((head_w[:, H:].T, np.zeros((H, 2 * d), np.float32), _array(model.head.bias)))
    return np.concatenate([np.vstack([w_u, w_h, b[None]]) for w_u, w_h, b in blocks], axis=1)


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
        self.weights = fused_weights(model)
        H = self.hidden_size
        self.cell_width = {"gru": 4 * H, "lstm": 4 * H}.get(self.cell, H)
        if self.gate == "rhythm":
            g = layer.gate
            self.omega, self.phase = _array(g.omega), _array(g.phase)
            self.amplitude, self.offset = _array(g.amplitude), _array(g.offset)
        self.head_h_t = _array(model.head.weight[:, :H].t())
        # constants as 0-d arrays: a NumPy call is cheaper with these than with scalars
        self.min_variance = np.array(model.min_variance, np.float32)
        self.log_var_range = tuple(np.array(v, np.float32) for v in LOG_VAR_RANGE)
        self._zero, self._one = np.zeros((), np.float32), np.ones((), np.float32)
        self.n_channels = model.n_channels
        self._ones = np.ones((NUMPY_MAX_STREAMS, 1), np.float32)

    def step(self, u: np.ndarray, state: np.ndarray):
        """One step for ``u (B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns the new state ``(B, state_size)`` and the forecast ``mean, var``
        (each ``(B, d)``) of the next point.
        """
        H, k, B = self.hidden_size, self.cell_width, u.shape[0]
        if B > len(self._ones):
            self._ones = np.ones((B, 1), np.float32)
        h = state[:, :H]
        z = np.concatenate([u, h, self._ones[:B]], axis=1) @ self.weights  # (B, cell | gate | head's u-part)
        cell, gate = self.cell, self.gate
        if cell == "gru":
            rz = expit(z[:, : 2 * H])
            n = np.tanh(z[:, 2 * H: 3 * H] + rz[:, :H] * z[:, 3 * H: k])
            h_new = n + rz[:, H:] * (h - n)
        elif cell == "lstm":
            c = state[:, H: 2 * H]
            gates = expit(z[:, :k])  # i, f, (g: unused), o
            c_new = gates[:, H: 2 * H] * c + gates[:, :H] * np.tanh(z[:, 2 * H: 3 * H])
            h_new = gates[:, 3 * H: k] * np.tanh(c_new)
        else:
            h_new = np.tanh(z[:, :k])
        if gate == "event":
            is_open = z[:, k: k + H] > self._zero
            k += H
        elif gate == "rhythm":
            time = state[:, -1:]
            angle = time[:, :, None] * self.omega + self.phase
            is_open = (self.offset + (self.amplitude * np.sin(angle)).sum(-1)) > self._zero
        if gate is not None:
            h_new = np.where(is_open, h_new, h)
            if cell == "lstm":
                c_new = np.where(is_open, c_new, c)
        new_state = h_new
        if state.shape[1] != H:  # (h, c) for the LSTM, then the rhythm gate's time
            parts = [h_new] + ([c_new] if cell == "lstm" else []) + ([time + self._one] if gate == "rhythm" else [])
            new_state = np.concatenate(parts, axis=1)
        out = h_new @ self.head_h_t + z[:, k:]
        d, low, high = self.n_channels, *self.log_var_range
        return new_state, out[:, :d], np.exp(np.minimum(np.maximum(out[:, d:], low), high)) + self.min_variance
