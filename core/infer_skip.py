"""Numba kernels of a gated layer's inference that skip closed neurons.

A selective-update layer keeps a closed neuron's state exactly, so its
candidate need not be computed. These kernels compute the switch of every
neuron first (event gate: ``W x + w ⊙ h + b``; rhythm gate: the schedule at the
stream's time index), then the cell's rows for the open neurons only, one
stream at a time: for each open neuron ``j`` one pass over ``v = [u, h, 1]``
for all its rows of ``[W_ih | W_hh | b]``, then its nonlinearities. A closed
neuron's ``h`` (and ``c``) is not touched. The work per stream and step is
about ``update rate x`` the dense step's, plus the switch and the read-out.
Under the rhythm gate, whose switch depends on the time index only, a stream at
the same index as the stream stepped before it reuses its open set (streams
that advance together share it).

Each stream reads its open neurons' rows (there is no reuse of a row across
streams, which the torch block loop's GEMMs have), so for many streams these
kernels beat the dense torch loop only below an open share that grows with the
hidden size (:data:`~sparsernn.core.inference.SKIP_MAX_OPEN_SHARE`).

The dot products are written with ``fastmath`` reassociation so that LLVM
vectorises them; they sum in another order than the reference (tested equal
within float32 rounding, and closed neurons bit-equal,
``tests/core/test_inference_steppers.py``).

Layout of the model arrays (all float32), with ``L = d + H + 1`` the width of
``v = [u, h, 1]`` padded with zeros to ``P``, a multiple of :data:`PAD`:

- ``rows (H, R, P)``: neuron ``j``'s rows of the cell over ``v``. GRU (R = 4):
  ``r``, ``z`` (both biases summed), the candidate's h-part ``[0, W_hn, b_hn]``
  and its u-part ``[W_in, 0, b_in]``; LSTM (R = 4): ``i, f, g, o``; Elman (R = 1).
- ``gate_w (d + 2, H)``: the event gate ``[W_x^T; w_h; b]`` (a dummy otherwise).
- ``rhythm (H, 3K + 1)``: ``[omega | phase | amplitude | offset]`` of the rhythm
  gate (a dummy otherwise).
- ``head (2m, P)``: the read-out over ``[u, h, 1]`` (its bias in column ``L - 1``).
- ``consts``: ``[low, high, min_variance]`` of the read-out's variance.

The kernels' last arguments ``cell`` and ``gate`` are
:data:`~sparsernn.core.infer_numba.CELL_CODES` / ``GATE_CODES``; the state
layout ``[h | c | t]`` and the gate orders are those of
:mod:`~sparsernn.core.step_weights`.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit

FASTMATH = {"reassoc", "contract"}
"""The kernels' fastmath flags: reassociation lets LLVM vectorise the dot products; NaN / inf handling
is unchanged."""


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _dot(a, b, start, stop):
    acc = np.float32(0.0)
    for i in range(start, stop):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def cell_rows(w, v, pre, k, cell, P, L, d):
    """One open neuron's pre-activations into ``pre[:, k]``: its rows ``w (R, P)`` over ``v = [u, h, 1]``.

    GRU: ``r``, ``z`` and the candidate's h-part over all of ``v``, its u-part over the ``d`` inputs and
    the bias apart; LSTM: ``i, f, g, o``; Elman: one row."""
    zero = np.float32(0.0)
    if cell == 2:  # Elman: one row
        a0 = zero
        for i in range(P):
            a0 += w[0, i] * v[i]
        pre[0, k] = a0
    elif cell == 0:  # GRU
        a0 = a1 = a2 = zero
        for i in range(P):
            x = v[i]
            a0 += w[0, i] * x
            a1 += w[1, i] * x
            a2 += w[2, i] * x
        a3 = w[3, L - 1]
        for i in range(d):
            a3 += w[3, i] * v[i]
        pre[0, k], pre[1, k], pre[2, k], pre[3, k] = a0, a1, a2, a3
    else:  # LSTM
        a0 = a1 = a2 = a3 = zero
        for i in range(P):
            x = v[i]
            a0 += w[0, i] * x
            a1 += w[1, i] * x
            a2 += w[2, i] * x
            a3 += w[3, i] * x
        pre[0, k], pre[1, k], pre[2, k], pre[3, k] = a0, a1, a2, a3


@njit(cache=True, nogil=True, inline="always")
def _sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(cache=True, nogil=True)
def _rhythm_schedule(rhythm, time, a):
    """The rhythm gate's pre-activation at time index ``time`` into ``a (H,)``, its angle
    ``time * omega + phase`` rounded twice as the layer rounds it. LLVM contracts a product and the
    sum it feeds into one fused multiply-add, whose single rounding moves the angle by up to 1e-3 rad
    at time indices in the thousands; so the product feeds ``+ 0.0`` first (``fma(t, w, 0)`` rounds
    exactly as the product does, and ``x + 0.0`` cannot be dropped without fastmath)."""
    n_freq = (rhythm.shape[1] - 1) // 3
    zero = np.float32(0.0)
    for j in range(rhythm.shape[0]):
        acc = zero
        for f in range(n_freq):
            product = time * rhythm[j, f] + zero
            acc += rhythm[j, 2 * n_freq + f] * np.sin(product + rhythm[j, n_freq + f])
        a[j] = rhythm[j, 3 * n_freq] + acc


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def open_neurons(u, state, gate_w, rhythm, gate, H, a, idx):
    """The open neurons of one stream for its point ``u (d,)`` and ``state``: writes their indices,
    in increasing order, to ``idx[:n]`` and returns ``n``. ``a (H,)`` is scratch."""
    d = u.shape[0]
    zero = np.float32(0.0)
    if gate == 0:
        for j in range(H):
            idx[j] = j
        return H
    if gate == 1:  # event: a = W_x u + w_h * h + b, vectorised over the neurons
        for j in range(H):
            a[j] = gate_w[d + 1, j] + gate_w[d, j] * state[j]
        for i in range(d):
            x = u[i]
            for j in range(H):
                a[j] += x * gate_w[i, j]
    else:  # rhythm: the schedule at the stream's time index
        _rhythm_schedule(rhythm, state[state.shape[0] - 1], a)
    n = 0
    for j in range(H):  # branch-free compaction
        idx[n] = j
        n += np.int64(a[j] > zero)
    return n


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def advance_open(u, state, mean, var, rows, head, consts, cell, gate, idx, n_open, v, pre):
    """Advance one stream's ``state`` in place by its point ``u (d,)``, updating the neurons
    ``idx[:n_open]`` only, and write the read-out to ``mean (m,)``, ``var (m,)``. ``v (P,)`` and
    ``pre (4, H)`` are scratch.

    Two passes: the open neurons' pre-activations (one pass over ``v`` per neuron for all its
    rows), then their nonlinearities (a loop over the open neurons)."""
    d, H, m, P = u.shape[0], rows.shape[0], mean.shape[0], rows.shape[2]
    L = d + H + 1
    zero = np.float32(0.0)
    for i in range(d):
        v[i] = u[i]
    for j in range(H):
        v[d + j] = state[j]
    v[L - 1] = np.float32(1.0)
    for i in range(L, P):
        v[i] = zero
    for k in range(n_open):
        cell_rows(rows[idx[k]], v, pre, k, cell, P, L, d)
    for k in range(n_open):
        j = idx[k]
        if cell == 0:  # GRU: h' = n + z (h - n), n = tanh(W_in u + b_in + r (W_hn h + b_hn))
            n = np.tanh(pre[3, k] + _sigmoid(pre[0, k]) * pre[2, k])
            state[j] = n + _sigmoid(pre[1, k]) * (v[d + j] - n)
        elif cell == 1:
            c = _sigmoid(pre[1, k]) * state[H + j] + _sigmoid(pre[0, k]) * np.tanh(pre[2, k])
            state[H + j] = c
            state[j] = _sigmoid(pre[3, k]) * np.tanh(c)
        else:
            state[j] = np.tanh(pre[0, k])
    for k in range(n_open):
        v[d + idx[k]] = state[idx[k]]
    if gate == 2:
        state[state.shape[0] - 1] += np.float32(1.0)
    low, high, min_variance = consts[0], consts[1], consts[2]
    for o in range(m):
        mean[o] = _dot(head[o], v, 0, P)
        var[o] = np.exp(min(max(_dot(head[m + o], v, 0, P), low), high)) + min_variance


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def run_block(rows, gate_w, rhythm, head, consts, cell, gate, u, state, mean, var):
    """Inference over ``u (T, B, d)``: ``state (B, S)`` advances in place; the read-out after each
    row goes to ``mean (T, B, m)`` and ``var (T, B, m)``. Streams step one after another; under the
    rhythm gate, a stream at the same time index as the one before reuses its open set."""
    H, L = rows.shape[0], rows.shape[2]  # L: the padded width
    a, v = np.empty(H, np.float32), np.empty(L, np.float32)
    pre = np.empty((4, H), np.float32)
    idx = np.empty(H, np.int64)
    last = np.float32(np.nan)
    n_open = 0
    S = state.shape[1]
    for t in range(u.shape[0]):
        for b in range(u.shape[1]):
            if gate != 2 or state[b, S - 1] != last:
                n_open = open_neurons(u[t, b], state[b], gate_w, rhythm, gate, H, a, idx)
                if gate == 2:
                    last = state[b, S - 1]
            advance_open(u[t, b], state[b], mean[t, b], var[t, b], rows, head, consts, cell, gate, idx, n_open,
                         v, pre)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def run_row(rows, gate_w, rhythm, head, consts, cell, gate, u, row, state, mean, var):
    """One step of the stream in row ``row`` of ``state (N, S)``, ``mean (N, m)``, ``var (N, m)``
    (updated in place) for its point ``u (d,)``."""
    H, L = rows.shape[0], rows.shape[2]  # L: the padded width
    a, v = np.empty(H, np.float32), np.empty(L, np.float32)
    pre = np.empty((4, H), np.float32)
    idx = np.empty(H, np.int64)
    n_open = open_neurons(u, state[row], gate_w, rhythm, gate, H, a, idx)
    advance_open(u, state[row], mean[row], var[row], rows, head, consts, cell, gate, idx, n_open, v, pre)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy of ``tensor``."""
    return tensor.detach().to(torch.float32).cpu().numpy().copy()


PAD = 64
"""The rows are padded with zeros to a multiple of this width: LLVM vectorises the dot products by
16 lanes and 4 interleaved accumulators, and runs a shorter loop element by element."""


def _pad(a):
    width = -(-a.shape[-1] // PAD) * PAD
    out = np.zeros(a.shape[:-1] + (width,), np.float32)
    out[..., :a.shape[-1]] = a
    return out


def model_arrays(weights, readout):
    """``rows, gate_w, rhythm, head, consts`` (see the module's layout) of a layer's
    :class:`~sparsernn.core.step_weights.StepWeights` and its :class:`~sparsernn.core.step_weights.GaussianReadout`."""
    d, H = weights.input_size, weights.hidden_size
    w_ih, w_hh = as_array(weights.weight_ih), as_array(weights.weight_hh)
    b_ih, b_hh = as_array(weights.bias_ih), as_array(weights.bias_hh)
    k = w_ih.shape[0] // H
    gates = [np.concatenate([w_ih[g * H:(g + 1) * H], w_hh[g * H:(g + 1) * H], (b_ih + b_hh)[g * H:(g + 1) * H, None]],
                            axis=1) for g in range(k)]
    if weights.cell == "gru":  # the candidate's h-part and u-part apart: n = tanh(W_in u + b_in + r (W_hn h + b_hn))
        n_h, n_u = gates[2].copy(), gates[2].copy()
        n_h[:, :d], n_h[:, -1] = 0.0, b_hh[2 * H:]
        n_u[:, d:d + H], n_u[:, -1] = 0.0, b_ih[2 * H:]
        gates = gates[:2] + [n_h, n_u]
    rows = _pad(np.stack(gates, axis=1))
    if weights.update_gate == "event":
        gate_w = np.vstack([as_array(weights.event_weight_x).T, as_array(weights.event_weight_h)[None],
                            as_array(weights.event_bias)[None]])
    else:
        gate_w = np.zeros((1, 1), np.float32)
    if weights.update_gate == "rhythm":
        rhythm = np.concatenate([as_array(weights.rhythm_omega), as_array(weights.rhythm_phase),
                                 as_array(weights.rhythm_amplitude), as_array(weights.rhythm_offset)[:, None]], axis=1)
    else:
        rhythm = np.zeros((1, 1), np.float32)
    head_w = as_array(readout.weight)
    head = _pad(np.concatenate([head_w[:, H:], head_w[:, :H], as_array(readout.bias)[:, None]], axis=1))
    consts = np.array([*readout.log_var_range, readout.min_variance], np.float32)
    return tuple(np.ascontiguousarray(x, dtype=np.float32) for x in (rows, gate_w, rhythm, head, consts))


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def open_count(gate_w, rhythm, gate, u, state):
    """The number of open (stream, neuron) pairs for points ``u (B, d)`` from ``state (B, S)``."""
    H = gate_w.shape[1] if gate == 1 else rhythm.shape[0]
    a, idx = np.empty(H, np.float32), np.empty(H, np.int64)
    total, n_open, last, S = 0, 0, np.float32(np.nan), state.shape[1]
    for b in range(u.shape[0]):
        if gate != 2 or state[b, S - 1] != last:  # the rhythm gate: streams at one time index share the count
            n_open = open_neurons(u[b], state[b], gate_w, rhythm, gate, H, a, idx)
            if gate == 2:
                last = state[b, S - 1]
        total += n_open
    return total
