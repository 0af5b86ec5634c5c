"""A neuron-major numba kernel of a gated layer's inference for blocks of many streams.

:mod:`~sparsernn.core.infer_skip` advances one stream at a time: each open
neuron's weight rows are read again for every stream that opens it, and the
nonlinearities are scalar libm calls. This kernel takes a chunk of streams
(:data:`CHUNK`) through all the block's steps and, per step:

1. the switches of all (stream, neuron) pairs, vectorised over the streams
   (event: ``W x + w ⊙ h + b`` over the chunk's ``[u, h]``; rhythm: the schedule
   at each stream's time index, shared by consecutive streams at one index);
2. per neuron ``j`` the list of the streams that open it;
3. ``j``'s rows of the cell applied once for all those streams -- narrow layers
   (``[u, h, 1]`` at most :data:`NARROW_MAX_WIDTH` wide): their ``[u, h]``
   gathered into a small matrix, one column per stream, and the products
   vectorised over the streams; wide layers: a dot product over each stream's
   row of ``[u, h, 1]`` for all of ``j``'s rows at once -- then the
   nonlinearities over the gathered values, vectorised (:func:`tanh_f32`,
   :func:`sigmoid_f32`: float32 rational approximations);
4. the new ``h`` scattered after every neuron is done (all neurons read the
   previous step's ``h``); closed neurons' ``h`` and ``c`` are not touched;
5. the read-out of every stream, vectorised over the streams.

The chunk's ``[u; h; 1]`` lives transposed (one column per stream) so that
every loop over streams is contiguous (wide layers keep a row-per-stream copy
too, for the dot products). Same numbers as the reference within
float32 rounding and the approximations' error (``tests/core/test_infer_skip_nm.py``);
the model arrays are those of :func:`~sparsernn.core.infer_skip.model_arrays`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .infer_skip import FASTMATH, _rhythm_schedule, cell_rows

MIN_STREAMS = 32
""":class:`~sparsernn.core.infer_numba.NumbaStepper` runs a gated layer's blocks of more streams than this
here, smaller ones on :func:`~sparsernn.core.infer_skip.run_block` (one stream at a time)."""

CHUNK = (1024, 512)
"""Streams advanced together through a block's steps (narrow, wide ``[u, h, 1]``; see
:data:`NARROW_MAX_WIDTH`): their ``[u; h; 1]`` and scratch stay in cache, and each neuron's rows serve
all the chunk's streams that open it (measured at hidden sizes 32 and 128: 1024 streams best for the
narrow path, 512 for the wide one; ``docs/benchmarks_streaming.md``)."""

NARROW_MAX_WIDTH = 64
"""Up to this width of ``[u, h, 1]`` the open streams' columns are gathered and each row's products are
vectorised over the streams; wider, each stream's row of ``[u, h, 1]`` is read once for all the neuron's
rows (dot products): gathering a wide column of many streams costs more than the products."""

TANH_CLAMP = np.float32(7.99881172180175781)
"""Beyond this ``tanh`` is 1 in float32 (:func:`tanh_f32` clamps its argument to it)."""


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def tanh_f32(x):
    """``tanh(x)`` in float32 by Eigen's 13/6 rational approximation (max error a few float32 ulp,
    ``tests/core/test_infer_skip_nm.py``); branch-free, so loops over it vectorise. NaN stays NaN."""
    c = TANH_CLAMP
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def sigmoid_f32(x):
    """``1 / (1 + exp(-x))`` as ``0.5 + 0.5 tanh(x / 2)`` (:func:`tanh_f32`): absolute error below 1e-7."""
    half = np.float32(0.5)
    return half + half * tanh_f32(half * x)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def run_block_nm(rows, gate_w, rhythm, head, consts, cell, gate, u, state, mean, var):
    """Inference over ``u (T, B, d)``: ``state (B, S)`` advances in place; the read-out after each
    row goes to ``mean (T, B, m)`` and ``var (T, B, m)``. Same arguments as
    :func:`~sparsernn.core.infer_skip.run_block`; see the module for the order of the work."""
    T, B, d = u.shape
    H = rows.shape[0]
    L = d + H + 1
    S = state.shape[1]
    m = mean.shape[2]
    wide = L > NARROW_MAX_WIDTH
    C = min(CHUNK[1] if wide else CHUNK[0], max(B, 1))
    f32 = np.float32
    zero, one = f32(0.0), f32(1.0)
    VT = np.empty((L, C), f32)  # [u; h; 1], one column per stream of the chunk
    CT = np.empty((H, C), f32)  # the LSTM's c
    tm = np.empty(C, f32)  # the time index (rhythm)
    A = np.empty((H, C), f32)  # the switches' pre-activations
    acol = np.empty(H, f32)
    idx = np.empty((H, C), np.int64)  # per neuron, the streams that open it
    cnt = np.empty(H, np.int64)
    P = rows.shape[2]
    R = 1 if cell == 2 else 4
    V = np.zeros((C if wide else 1, P), f32)  # wide: [u, h, 1, 0...] again, one row per stream
    G = np.empty((L, C), f32)  # the gathered [u; h] of those streams
    pre = np.empty((4, C), f32)
    hnew = np.empty((H, C), f32)
    acc = np.empty(C, f32)
    low, high, min_variance = consts[0], consts[1], consts[2]
    for b0 in range(0, B, C):
        nb = min(C, B - b0)
        for j in range(H):
            for k in range(nb):
                VT[d + j, k] = state[b0 + k, j]
        if cell == 1:
            for j in range(H):
                for k in range(nb):
                    CT[j, k] = state[b0 + k, H + j]
        for k in range(nb):
            VT[L - 1, k] = one
            tm[k] = state[b0 + k, S - 1]
        if wide:
            for k in range(nb):
                V[k, L - 1] = one
                for j in range(H):
                    V[k, d + j] = VT[d + j, k]
        for t in range(T):
            for i in range(d):
                for k in range(nb):
                    VT[i, k] = u[t, b0 + k, i]
            if wide:
                for k in range(nb):
                    for i in range(d):
                        V[k, i] = u[t, b0 + k, i]
            # 1. the switches
            if gate == 1:  # event: a = b + w_h * h + W_x u, in the order of infer_skip.open_neurons
                for j in range(H):
                    bj, wj = gate_w[d + 1, j], gate_w[d, j]
                    for k in range(nb):
                        A[j, k] = bj + wj * VT[d + j, k]
                for i in range(d):
                    for j in range(H):
                        w = gate_w[i, j]
                        for k in range(nb):
                            A[j, k] += VT[i, k] * w
            elif gate == 2:  # rhythm: the schedule at each stream's time index
                last = f32(np.nan)
                for k in range(nb):
                    if tm[k] != last:
                        _rhythm_schedule(rhythm, tm[k], acol)
                        last = tm[k]
                    for j in range(H):
                        A[j, k] = acol[j]
            else:
                for j in range(H):
                    for k in range(nb):
                        A[j, k] = one
            # 2. per neuron, the streams that open it (branch-free compaction)
            for j in range(H):
                n = 0
                for k in range(nb):
                    idx[j, n] = k
                    n += np.int64(A[j, k] > zero)
                cnt[j] = n
            # 3. per neuron, its rows over the streams that open it, then the nonlinearities
            for j in range(H):
                n = cnt[j]
                if n == 0:
                    continue
                w = rows[j]
                if wide:  # dot products over each stream's row of V (each element read once for all rows)
                    for q in range(n):
                        cell_rows(w, V[idx[j, q]], pre, q, cell, P, L, d)
                else:  # narrow: [u; h] of those streams gathered into G's columns, products vectorised over them
                    for i in range(L - 1):
                        for q in range(n):
                            G[i, q] = VT[i, idx[j, q]]
                    for r in range(R):
                        c0 = w[r, L - 1]
                        for q in range(n):
                            pre[r, q] = c0
                    if cell == 0:  # GRU: r, z over [u, h]; the candidate's h-part over h; its u-part over u
                        for i in range(d):
                            w0, w1, w3 = w[0, i], w[1, i], w[3, i]
                            for q in range(n):
                                g = G[i, q]
                                pre[0, q] += w0 * g
                                pre[1, q] += w1 * g
                                pre[3, q] += w3 * g
                        for i in range(d, L - 1):
                            w0, w1, w2 = w[0, i], w[1, i], w[2, i]
                            for q in range(n):
                                g = G[i, q]
                                pre[0, q] += w0 * g
                                pre[1, q] += w1 * g
                                pre[2, q] += w2 * g
                    elif cell == 1:
                        for i in range(L - 1):
                            w0, w1, w2, w3 = w[0, i], w[1, i], w[2, i], w[3, i]
                            for q in range(n):
                                g = G[i, q]
                                pre[0, q] += w0 * g
                                pre[1, q] += w1 * g
                                pre[2, q] += w2 * g
                                pre[3, q] += w3 * g
                    else:
                        for i in range(L - 1):
                            w0 = w[0, i]
                            for q in range(n):
                                pre[0, q] += w0 * G[i, q]
                if cell == 0:  # h' = n + z (h - n), n = tanh(W_in u + b_in + r (W_hn h + b_hn))
                    for q in range(n):
                        acc[q] = VT[d + j, idx[j, q]]
                    for q in range(n):
                        nn = tanh_f32(pre[3, q] + sigmoid_f32(pre[0, q]) * pre[2, q])
                        hnew[j, q] = nn + sigmoid_f32(pre[1, q]) * (acc[q] - nn)
                elif cell == 1:  # the gathered c into acc, the new c back (c_j is read by j only)
                    for q in range(n):
                        acc[q] = CT[j, idx[j, q]]
                    for q in range(n):
                        c = sigmoid_f32(pre[1, q]) * acc[q] + sigmoid_f32(pre[0, q]) * tanh_f32(pre[2, q])
                        acc[q] = c
                        hnew[j, q] = sigmoid_f32(pre[3, q]) * tanh_f32(c)
                    for q in range(n):
                        CT[j, idx[j, q]] = acc[q]
                else:
                    for q in range(n):
                        hnew[j, q] = tanh_f32(pre[0, q])
            # 4. the new h, once every neuron has read the previous one
            for j in range(H):
                for q in range(cnt[j]):
                    VT[d + j, idx[j, q]] = hnew[j, q]
            if wide:
                for j in range(H):
                    for q in range(cnt[j]):
                        V[idx[j, q], d + j] = hnew[j, q]
            if gate == 2:
                for k in range(nb):
                    tm[k] += one
            # 5. the read-out of every stream
            for o in range(m):
                for k in range(nb):
                    acc[k] = zero
                for i in range(L):
                    w0 = head[o, i]
                    for k in range(nb):
                        acc[k] += w0 * VT[i, k]
                for k in range(nb):
                    mean[t, b0 + k, o] = acc[k]
                for k in range(nb):
                    acc[k] = zero
                for i in range(L):
                    w0 = head[m + o, i]
                    for k in range(nb):
                        acc[k] += w0 * VT[i, k]
                for k in range(nb):
                    var[t, b0 + k, o] = np.exp(min(max(acc[k], low), high)) + min_variance
        for j in range(H):
            for k in range(nb):
                state[b0 + k, j] = VT[d + j, k]
        if cell == 1:
            for j in range(H):
                for k in range(nb):
                    state[b0 + k, H + j] = CT[j, k]
        if gate == 2:
            for k in range(nb):
                state[b0 + k, S - 1] = tm[k]
