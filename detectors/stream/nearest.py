"""The window novelty's nearest-neighbour search, compiled (numba): :func:`nearest_windows`.

:meth:`WindowNovelty._novelty_reference <sparsernn.detectors.stream.novelty.WindowNovelty._novelty_reference>`
is the plain NumPy definition, one time step at a time over all ``memory``
slots of every stream's bank; this kernel computes the same novelties and
leaves the same state, stream by stream:

1. the embeddings of all T rows of the call (the ring and the block means,
   summed in the same order as NumPy's ``mean`` over a block: first element,
   then the others, then divided by ``block``), rounded to float32, the
   bank's precision, like the reference's;
2. which rows store their embedding (every ``block`` rows once the window is
   complete), so which slot each of those overwrites and when;
3. every stored embedding (the filled part of the bank, then the ones stored
   during the call) is compared with the embeddings of the rows that may see
   it only: a slot is a neighbour of row ``t`` from the first row that is
   ``exclude`` rows after the one it ends at, until the row whose store
   overwrites it. The distances are computed in float64 from the float32
   embeddings, as in the reference, with the rows as the inner (vectorised)
   loop.

Nothing is approximated: the nearest distance is the minimum of the same
float64 numbers (summed over the features in order rather than NumPy's
pairwise order, a difference of an ulp or so). NaN in an embedding or a bank
entry that is a neighbour makes the novelty NaN, as ``np.min`` does.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def nearest_windows(scaled, rows, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out):
    """Novelties ``out`` (T, B) of the scaled values ``scaled`` (T, B, C) of distinct streams ``rows`` (B,).

    ``ring`` (n, span, C) float64, ``seen`` (n,) and ``stored`` (n,) int64, ``bank`` (n, memory, F)
    float32 and ``bank_rows`` (n, memory) int64 are the wrapper's arrays (all streams); with ``learn``
    the ring, bank, bank_rows and stored of ``rows`` advance past the call, in place (``seen`` is
    the caller's).
    """
    T, B, C = scaled.shape
    span = window * block
    memory, F = bank.shape[1], bank.shape[2]
    embeddings = np.empty((F, T))
    vector = np.empty(F)
    acc, best = np.empty(T), np.empty(T)
    usable = np.empty(T, dtype=np.bool_)
    stores = np.empty(T, dtype=np.int64)  # the rows of the call whose embedding is stored, in order
    local = np.empty((span, C))
    for b in range(B):
        r = rows[b]
        s0, st0 = seen[r], stored[r]
        local[:, :] = ring[r]
        n_new = 0
        for t in range(T):  # 1-2. the ring, the embeddings, the stores
            now = s0 + t
            for c in range(C):
                local[now % span, c] = scaled[t, b, c]
            for w in range(window):
                first = now + 1 + w * block  # oldest first: the row after ``now`` is the oldest kept
                for c in range(C):
                    total = local[first % span, c]
                    for k in range(1, block):
                        total += local[(first + k) % span, c]
                    embeddings[w * C + c, t] = np.float32(total / block)  # the bank's precision
            if learn and now + 1 >= span and (now + 1) % block == 0:
                stores[n_new] = t
                n_new += 1
        best[:] = np.inf
        usable[:] = False
        filled = min(st0, memory)
        for i in range(filled + n_new):  # 3. every embedding the rows of the call may see
            if i < filled:  # the bank as the call found it
                row = bank_rows[r, i]
                if row < 0:
                    continue
                lo, hi = max(0, row + exclude - s0), T - 1
                j = (i - st0) % memory  # the store of this call that overwrites slot i, if it comes
                if j < n_new:
                    hi = stores[j]
                for f in range(F):
                    vector[f] = bank[r, i, f]
            else:  # the embeddings stored during the call
                k = i - filled
                lo, hi = stores[k] + exclude, T - 1
                if k + memory < n_new:
                    hi = stores[k + memory]
                for f in range(F):
                    vector[f] = embeddings[f, stores[k]]
            if lo > hi:
                continue
            # squared distances (summed over the features) to the rows lo..hi; the running minimum
            # takes them (NaN sticks, as in np.min). Loops over views from 0: LLVM vectorises them
            # (a loop over range(lo, hi + 1) it does not, 4x slower)
            width, part, low = hi + 1 - lo, acc[lo:hi + 1], best[lo:hi + 1]
            for i in range(width):
                part[i] = 0.0
            usable[lo:hi + 1] = True
            for f in range(F):
                value, later = vector[f], embeddings[f, lo:hi + 1]
                for i in range(width):
                    diff = value - later[i]
                    part[i] += diff * diff
            for i in range(width):
                if part[i] < low[i] or part[i] != part[i]:
                    low[i] = part[i]
        for t in range(T):
            out[t, b] = np.sqrt(best[t] / F) if usable[t] and s0 + t + 1 >= span else 0.0
        if learn:
            ring[r] = local
            for k in range(n_new):
                slot = (st0 + k) % memory
                for f in range(F):
                    bank[r, slot, f] = embeddings[f, stores[k]]
                bank_rows[r, slot] = s0 + stores[k]
            stored[r] = st0 + n_new
