"""A layer and its Gaussian read-out as numba-compiled steps, for a handful of streams or a gated layer.

For one stream, a recurrent step is a few dozen operations on vectors of 32
numbers; each torch call costs several microseconds of dispatch and each NumPy
call about one, so a step written as array calls is dominated by their count.
:class:`NumbaStepper` takes the layer's :class:`~sparsernn.core.step_weights.StepWeights`
and a :class:`~sparsernn.core.step_weights.GaussianReadout` once, at
construction, and runs the step -- the cell's products and nonlinearities, the
update gate and the read-out -- in one numba-compiled loop over the streams, in
float32:

- a layer without an update gate: every map that reads the step's input ``u``
  and the previous hidden state ``h`` stacked into one matrix
  (:func:`fused_weights`) and the product ``[u, h, 1] @ W`` vectorised over its
  columns (:func:`_run_block`);
- a gated layer: the kernels of :mod:`~sparsernn.core.infer_skip`, which compute
  the switch first and then the open neurons only, one stream at a time; for a
  block of more than :data:`~sparsernn.core.infer_skip_nm.MIN_STREAMS` streams
  the neuron-major kernel of :mod:`~sparsernn.core.infer_skip_nm`, which reads
  each open neuron's rows once per step for all the streams that open it.

They are the numba twins of the layer followed by the read-out (summed in
another order; the equations are written again here because this is compiled
code, like ``core/csrc``) and are tested equal to the layer for every cell and
update gate (``tests/core/test_inference_steppers.py``).
:func:`~sparsernn.core.inference.choose_inference_backend` picks them for blocks
of at most :data:`~sparsernn.core.inference.NUMBA_MAX_STREAMS` streams, and for
larger blocks of a gated layer whose switch opens few neurons.

The kernels are compiled on first use and cached on disk (``cache=True``, in
``__pycache__`` next to this file): the first process compiles them once (a few
seconds), later processes load them (a fraction of a second).
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numba import njit

from . import infer_skip, infer_skip_nm
from .infer_skip import as_array as _array
from .step_weights import GaussianReadout, StepWeights

CELL_CODES = {"gru": 0, "lstm": 1, "elman": 2}
GATE_CODES = {None: 0, "event": 1, "rhythm": 2}


def fused_weights(weights: StepWeights, readout: GaussianReadout) -> np.ndarray:
    """The maps from ``[u, h, 1]`` (rows: d, H, 1) of a layer without an update gate stacked by
    columns, float32 ``(d + H + 1, G + 2m)``.

    Columns: the cell's pre-activations (GRU: ``r, z`` with both biases, then the
    ``u``- and the ``h``-part of the candidate, ``4H``; LSTM ``4H``; Elman ``H``)
    and the read-out's ``u``-part with its bias (``2m``).
    """
    d, H = weights.input_size, weights.hidden_size
    w_ih, w_hh = _array(weights.weight_ih), _array(weights.weight_hh)
    b_ih, b_hh = _array(weights.bias_ih), _array(weights.bias_hh)
    zeros_u, zeros_h = np.zeros((d, H), np.float32), np.zeros((H, H), np.float32)
    if weights.cell == "gru":
        blocks = [(w_ih[: 2 * H].T, w_hh[: 2 * H].T, b_ih[: 2 * H] + b_hh[: 2 * H]),
                  (w_ih[2 * H:].T, zeros_h, b_ih[2 * H:]), (zeros_u, w_hh[2 * H:].T, b_hh[2 * H:])]
    else:
        blocks = [(w_ih.T, w_hh.T, b_ih + b_hh)]
    head_w, n_out = _array(readout.weight), readout.weight.shape[0]
    blocks.append((head_w[:, H:].T, np.zeros((H, n_out), np.float32), _array(readout.bias)))
    return np.ascontiguousarray(np.concatenate([np.vstack([w_u, w_h, b[None]]) for w_u, w_h, b in blocks], axis=1))


# ---------------------------------------------------------------- kernels (no update gate)
# The kernels' first arguments, the model: ``weights`` from fused_weights; ``head_h`` the
# read-out's h-part (H, 2m); ``consts`` float32 [low, high, min_variance] of the
# variance; ``cell`` from CELL_CODES. The state layout [h | c] and the gate orders are
# those of core.step_weights.

@njit(cache=True, nogil=True)
def _sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(cache=True, nogil=True)
def _step_row(u, state, mean, var, weights, head_h, consts, cell, z, h_new, c_new):
    """One step of one stream: ``u (d,)``; ``state (S,)`` is updated in place; the
    read-out is written to ``mean (m,)``, ``var (m,)``. ``z``, ``h_new``, ``c_new`` are scratch."""
    d, H, m = u.shape[0], head_h.shape[0], mean.shape[0]
    n_cols = weights.shape[1]
    zero = np.float32(0.0)
    # z = [u, h, 1] @ weights (float32 accumulation, column-vectorised)
    for j in range(n_cols):
        z[j] = weights[d + H, j]
    for i in range(d):
        x = u[i]
        for j in range(n_cols):
            z[j] += x * weights[i, j]
    for i in range(H):
        x = state[i]
        for j in range(n_cols):
            z[j] += x * weights[d + i, j]
    if cell == 0:  # GRU: r, z, candidate's u-part, candidate's h-part
        k = 4 * H
        for j in range(H):
            r = _sigmoid(z[j])
            keep = _sigmoid(z[H + j])
            n = np.tanh(z[2 * H + j] + r * z[3 * H + j])
            h_new[j] = n + keep * (state[j] - n)
    elif cell == 1:  # LSTM: i, f, g, o; state = [h, c]
        k = 4 * H
        for j in range(H):
            c = _sigmoid(z[H + j]) * state[H + j] + _sigmoid(z[j]) * np.tanh(z[2 * H + j])
            c_new[j] = c
            h_new[j] = _sigmoid(z[3 * H + j]) * np.tanh(c)
    else:  # Elman
        k = H
        for j in range(H):
            h_new[j] = np.tanh(z[j])
    for j in range(H):
        state[j] = h_new[j]
        if cell == 1:
            state[H + j] = c_new[j]
    # head: out = h_new @ head_h + z[k:] (its u-part and bias)
    low, high, min_variance = consts[0], consts[1], consts[2]
    for o in range(2 * m):
        acc = zero
        for j in range(H):
            acc += h_new[j] * head_h[j, o]
        out = acc + z[k + o]
        if o < m:
            mean[o] = out
        else:
            var[o - m] = np.exp(min(max(out, low), high)) + min_variance


@njit(cache=True, nogil=True)
def _run_block(weights, head_h, consts, cell, u, state, mean, var):
    """Inference over ``u (T, B, d)``: ``state (B, S)`` advances in place; the read-out after
    each row is written to ``mean (T, B, m)`` and ``var (T, B, m)``."""
    H = head_h.shape[0]
    z = np.empty(weights.shape[1], np.float32)
    h_new, c_new = np.empty(H, np.float32), np.empty(H, np.float32)
    for t in range(u.shape[0]):
        for b in range(u.shape[1]):
            _step_row(u[t, b], state[b], mean[t, b], var[t, b], weights, head_h, consts, cell, z, h_new, c_new)


@njit(cache=True, nogil=True)
def _run_row(weights, head_h, consts, cell, u, row, state, mean, var):
    """One step of the stream in row ``row`` of the arrays ``state (N, S)``, ``mean (N, m)``,
    ``var (N, m)`` (updated in place) for its point ``u (d,)``."""
    H = head_h.shape[0]
    z = np.empty(weights.shape[1], np.float32)
    h_new, c_new = np.empty(H, np.float32), np.empty(H, np.float32)
    _step_row(u, state[row], mean[row], var[row], weights, head_h, consts, cell, z, h_new, c_new)


# ---------------------------------------------------------------- the class
class NumbaStepper:
    """A layer and its read-out on float32 NumPy arrays, numba-compiled (the ``"numba"`` inference backend).

    Parameters
    ----------
    weights : StepWeights
        The layer's step (:func:`~sparsernn.core.step_weights.step_weights`).
    readout : GaussianReadout
        Copied now, like ``weights``.

    Attributes
    ----------
    step_row : callable ``(u, row, state, mean, var) -> None``
        The one-point path: advance row ``row`` of ``state (N, state_size)`` in
        place by that stream's point ``u (d,)`` and write its read-out into
        ``mean[row]`` and ``var[row]`` (``mean``, ``var``: ``(N, m)``; all
        float32, C-contiguous). No checks: the caller passes arrays of the
        right shapes. (A partial of the compiled kernel, so a call costs no
        Python frame.)
    last_kernel : str or None
        The kernel of the last :meth:`run`: ``"dense"`` (no update gate),
        ``"per-stream"`` (:func:`~sparsernn.core.infer_skip.run_block`) or
        ``"neuron-major"`` (:func:`~sparsernn.core.infer_skip_nm.run_block_nm`, blocks of more
        than :data:`~sparsernn.core.infer_skip_nm.MIN_STREAMS` streams).

    Notes
    -----
    The constructor runs the kernels once on zeros, so their compilation (or
    loading from numba's on-disk cache) happens here, not on the first point.
    """

    def __init__(self, weights: StepWeights, readout: GaussianReadout) -> None:
        readout.check_fits(weights)
        self.cell, self.gate, self.hidden_size = weights.cell, weights.update_gate, weights.hidden_size
        self.n_channels, self.n_outputs = weights.input_size, readout.n_outputs
        self.state_size = weights.state_size
        if self.gate is None:
            fused = fused_weights(weights, readout)
            head_h = np.ascontiguousarray(_array(readout.weight[:, : self.hidden_size].t()))
            consts = np.array([*readout.log_var_range, readout.min_variance], np.float32)
            params = (fused, head_h, consts, CELL_CODES[self.cell])
            self._run_block, self.step_row = partial(_run_block, *params), partial(_run_row, *params)
        else:  # a gated layer: the kernels that skip closed neurons
            arrays = infer_skip.model_arrays(weights, readout)
            params = (*arrays, CELL_CODES[self.cell], GATE_CODES[self.gate])
            self._run_block = partial(infer_skip.run_block, *params)
            self._run_many = partial(infer_skip_nm.run_block_nm, *params)
            self.step_row = partial(infer_skip.run_row, *params)
            self._open_count = partial(infer_skip.open_count, arrays[1], arrays[2], GATE_CODES[self.gate])
        self.last_kernel: str | None = None
        # compile the kernels now (or load them from numba's cache), not on the first point
        self.run(np.zeros((1, 1, self.n_channels), np.float32), np.zeros((1, self.state_size), np.float32))
        if self.gate is not None:
            many = infer_skip_nm.MIN_STREAMS + 1
            self.run(np.zeros((1, many, self.n_channels), np.float32), np.zeros((many, self.state_size), np.float32))
        out = np.zeros((1, self.n_outputs), np.float32)
        self.step_row(np.zeros(self.n_channels, np.float32), 0, np.zeros((1, self.state_size), np.float32), out,
                      out.copy())

    def run(self, u: np.ndarray, state: np.ndarray):
        """Inference over ``u (T, B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns ``mean (T, B, m)``, ``var (T, B, m)`` (the read-out after each
        row) and the final state ``(B, state_size)``; ``state`` is not changed.
        """
        u = np.ascontiguousarray(u, dtype=np.float32)
        if u.ndim != 3 or u.shape[2] != self.n_channels:
            raise ValueError(f"u must have shape (T, B, {self.n_channels}); got {u.shape}")
        state = np.array(state, dtype=np.float32, order="C")  # a copy, advanced in place
        if state.shape != (u.shape[1], self.state_size):
            raise ValueError(f"state must have shape ({u.shape[1]}, {self.state_size}); got {state.shape}")
        mean = np.empty((*u.shape[:2], self.n_outputs), np.float32)
        var = np.empty_like(mean)
        if self.gate is not None and u.shape[1] > infer_skip_nm.MIN_STREAMS:
            self.last_kernel = "neuron-major"
            self._run_many(u, state, mean, var)
        else:
            self.last_kernel = "per-stream" if self.gate is not None else "dense"
            self._run_block(u, state, mean, var)
        return mean, var, state

    def open_share(self, u: np.ndarray, state: np.ndarray) -> float:
        """The share of (stream, neuron) pairs the switch opens for points ``u (B, d)`` from
        ``state (B, state_size)`` (float32 arrays): 1.0 for a layer without an update gate."""
        if self.gate is None:
            return 1.0
        u = np.ascontiguousarray(u, dtype=np.float32)
        state = np.ascontiguousarray(state, dtype=np.float32)
        return self._open_count(u, state) / float(max(1, u.shape[0]) * self.hidden_size)

    def step(self, u: np.ndarray, state: np.ndarray):
        """One step for ``u (B, d)`` float32 from ``state (B, state_size)`` float32.

        Returns the new state ``(B, state_size)`` and the read-out ``mean, var``
        (each ``(B, m)``); ``state`` is not changed.
        """
        mean, var, new_state = self.run(np.asarray(u)[None], state)
        return new_state, mean[0], var[0]
