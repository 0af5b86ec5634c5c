"""The window novelty's search, batched: :func:`nearest_windows_batched`, all rows of a call for one stream
searched together against the stream's index (issue 14 item 4).

Same arguments, same novelties (bit-equal) and same state after the call as
:func:`~sparsernn.detectors.stream.nearest.nearest_windows` (the per-row kernel, kept as the second
reference beside ``WindowNovelty._novelty_reference``; ``WindowNovelty.batched`` picks). What differs is
the order of the work, per stream (a stream with few stored embeddings is still scanned slot by slot):

1. every row's embedding and statistics first (the ring advanced once);
2. the embeddings stored *during* the call (by earlier rows) against the later rows that may see them,
   every pair, the rows as the inner, vectorised loop (a handful of stores per call); then the index's
   unsorted entries, row by row (group bounds, then distances);
3. the rows grouped by the column of their key, each column's rows in second-key order: each row walks
   its own column outwards from its second key (as the per-row kernel walks its first column), so each
   of those columns is read once for all its rows;
4. then the columns in order, each for the rows (in second-key order) whose key gap to it does not
   rule it out with the best distance so far: every other column is read once per call, not once per row.

While a stream's rows walk their own columns, the next stream's sorted entries are prefetched (LLVM's
prefetch hint, a slice per row): with hundreds of streams their first reads would otherwise wait on
memory one by one (the walks' reads depend on the comparisons before them).

The stores of the call are written to the bank and the index after the search (in order, as the per-row
kernel does, so the index ends the same), so the index's entries and ``bank_rows`` stay as the call found
them while it searches: a row sees an entry of the index when its store number is not below the row's
``stores - memory`` (not overwritten by the call's stores before the row) and its row ends at least
``exclude`` rows before; it sees the call's store ``k`` (made at row ``t_k``) when ``t_k <= t - exclude``
and no later store of the call overwrote it before row ``t``. The bounds, slack and relative margin are
the per-row kernel's (:mod:`~sparsernn.detectors.stream.nearest`), every distance the same float64 number,
the minimum of the same set: exact. NaN: a row with a NaN embedding is NaN if it sees any stored
embedding, a row that sees a NaN embedding is NaN.

Numba caches this module's kernels on this file alone: after editing only nearest.py or search_index.py
(whose helpers are inlined here), clear ``detectors/stream/__pycache__/*.nbi, *.nbc``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .nearest import CHUNK, RELATIVE, _embed, _reduced, _scanned, _unsorted, _visible, _walk
from .search_index import PENDING, _bounds, _column_of, _insert, _slack, group_ranges

__all__ = ["nearest_windows_batched"]



@njit(cache=True, nogil=True, inline="always")
def _key_part(r, column, key, key_slack, F, kmin, kmax):
    """The key's part of the bound of every entry of ``column``: ``F (reduced key gap)^2``."""
    gap = _reduced(max(key - kmax[r, column], kmin[r, column] - key, 0.0), key_slack)
    return F * gap * gap


def _hint(context, builder, kind, array, indices):
    """LLVM's prefetch of the element at ``indices`` (read, keep in every cache level)."""
    data = context.make_array(kind)(context, builder, array)
    pointer = cgutils.get_item_pointer(context, builder, kind, data, indices, wraparound=False)
    byte, flag = ir.IntType(8).as_pointer(), ir.IntType(32)
    hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
        ir.VoidType(), [byte, flag, flag, flag]), "llvm.prefetch.p0i8")
    builder.call(hint, [builder.bitcast(pointer, byte), flag(0), flag(3), flag(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch2(typingctx, array, i, j):
    """A hint to the CPU to load ``array[i, j]``'s cache line; nothing is read or written."""
    return types.void(array, i, j), lambda context, builder, sig, args: _hint(context, builder, sig.args[0],
                                                                              args[0], list(args[1:]))


@intrinsic
def _prefetch3(typingctx, array, i, j, k):
    """A hint to the CPU to load ``array[i, j, k]``'s cache line; nothing is read or written."""
    return types.void(array, i, j, k), lambda context, builder, sig, args: _hint(context, builder, sig.args[0],
                                                                                 args[0], list(args[1:]))


@njit(cache=True, nogil=True, inline="always")
def _lines(n, S):
    """Cache lines of :func:`_prefetch_lines` for ``n`` sorted entries and ``S`` statistics."""
    return (S + 3) * ((n + 15) // 16)


@njit(cache=True, nogil=True, inline="always")
def _prefetch_lines(r, n, lo, hi, sec, stats, numbers):
    """Prefetch lines ``lo..hi-1`` of stream ``r``'s first ``n`` sorted index entries, taken in order: each
    group statistic (16 entries a line), the second keys (16), the store numbers (8 a line)."""
    per16 = (n + 15) // 16
    S = stats.shape[1]
    for line in range(lo, hi):
        if line < S * per16:
            j = line // per16
            _prefetch3(stats, r, j, (line - j * per16) * 16)
        elif line < (S + 1) * per16:
            _prefetch2(sec, r, (line - S * per16) * 16)
        else:
            at = (line - (S + 1) * per16) * 8
            if at < n:
                _prefetch2(numbers, r, at)


@njit(cache=True, nogil=True)
def _batched_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges,
                    sizes, ix, emb, emb_t, rstat, rkey, rsec, rtop, rslack, best, nearest, stores, own, bound, nxt,
                    roldest, rlatest):
    """Stream ``r`` (column ``b`` of ``scaled``) of :func:`nearest_windows_batched` through its index (see the
    module's docstring); the arrays after ``ix`` are scratch of ``T`` rows (``bound``: ``PENDING``). Row ``t``
    sees the index's entries of store numbers ``>= roldest[t]`` that end at row ``rlatest[t]`` or before."""
    keys, sec, stats, numbers, size, nans, pending, count, absmax, last, ncol, cstart, cbound, kmin, kmax, \
        widest = ix
    T, C = scaled.shape[0], scaled.shape[2]
    span = window * block
    memory, F = bank.shape[1], bank.shape[2]
    half = F // 2
    pair = half * (F - half) / F
    scale = 1.0 + RELATIVE
    s0, st0 = seen[r], stored[r]
    local = ring[r].copy()
    # 1. the rows: embeddings, statistics, the call's stores
    n_new, first = 0, T
    for t in range(T):
        now = s0 + t
        for c in range(C):
            local[now % span, c] = scaled[t, b, c]
        roldest[t] = st0 + n_new - memory  # (the stores before it: the call's own overwrote the oldest)
        rlatest[t] = now - exclude
        best[t], nearest[t] = np.inf, -1
        if now + 1 < span:  # the window is not complete: no novelty, no store
            continue
        first = min(first, t)
        _embed(local, now, window, block, emb[t])
        for f in range(F):
            emb_t[f, t] = emb[t, f]
        rkey[t], rsec[t], rtop[t] = _bounds(ranges, emb[t], rstat[t])
        rslack[t, 0], rslack[t, 1], rslack[t, 2] = _slack(max(rtop[t], absmax[r]), F)
        if learn and (now + 1) % block == 0:
            stores[n_new] = t
            n_new += 1
    # 2. the call's stores against the later rows that may see them (NaN sticks, as in np.min)
    for k in range(n_new):
        lo, hi = stores[k] + exclude, T - 1
        if k + memory < n_new:
            hi = stores[k + memory]  # the row whose store overwrites it (after its search)
        if lo > hi:
            continue
        width = hi + 1 - lo
        acc = bound[:width]
        for i in range(width):
            acc[i] = 0.0
        for f in range(F):
            value, later = emb[stores[k], f], emb_t[f, lo:hi + 1]
            for i in range(width):
                diff = value - later[i]
                acc[i] += diff * diff
        low, near = best[lo:hi + 1], nearest[lo:hi + 1]
        for i in range(width):
            if acc[i] < low[i] or acc[i] != acc[i]:
                if low[i] == low[i]:
                    low[i], near[i] = acc[i], st0 + k
    # the index's entries: NaN first, then the unsorted ones (row by row)
    nc = ncol[r]
    n_pend = pending[r]
    active = 0
    for t in range(first, T):
        if best[t] != best[t]:
            continue
        oldest, latest = roldest[t], rlatest[t]
        first_slot = oldest % memory
        if rkey[t] != rkey[t]:  # a NaN embedding: NaN if it has any neighbour
            for at in range(size[r]):
                if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
                    best[t] = np.nan
                    break
            for at in range(memory, memory + n_pend):
                if best[t] == best[t] and _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
                    best[t] = np.nan
            continue
        for at in range(size[r] - nans[r], size[r]):  # neighbours with a NaN
            if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
                best[t] = np.nan
                break
        if best[t] != best[t]:
            continue
        low, near = _unsorted(r, n_pend, stats, keys, numbers, bank, bank_rows, rstat[t], sizes, rslack[t, 2],
                              bound, emb[t], oldest, latest, first_slot, best[t], nearest[t])
        best[t], nearest[t] = low, near
        if low == low:
            own[t] = _column_of(cbound, r, nc, rkey[t])
            stores[T + active] = t  # (the rows still searching, after the stores' rows)
            active += 1
    # 3. each row's own column, the rows by (column, second key)
    rows = stores[T:T + active]
    rows = rows[np.argsort(rsec[rows], kind="mergesort")]  # by second key
    by_column = rows[np.argsort(own[rows], kind="mergesort")]  # by column, then second key
    lines = _lines(size[nxt], stats.shape[1]) if nxt >= 0 else 0
    for i in range(active):
        if nxt >= 0:  # the next stream's index, a slice per row, while this one's is searched
            _prefetch_lines(nxt, size[nxt], i * lines // active, (i + 1) * lines // active, sec, stats, numbers)
        t = by_column[i]
        oldest = roldest[t]
        key_slack, second_slack, group_slack = rslack[t, 0], rslack[t, 1], rslack[t, 2]
        base = _key_part(r, own[t], rkey[t], key_slack, F, kmin, kmax)
        if base > best[t] * scale:
            continue
        best[t], nearest[t] = _walk(r, own[t], base, rsec[t], second_slack, pair, stats, numbers, sec, cstart,
                                    bank, bank_rows, rstat[t], sizes, group_slack, bound, emb[t], oldest,
                                    rlatest[t], oldest % memory, best[t], nearest[t])
    # 4. every other column once, for the rows (by second key) whose key gap does not rule it out
    for column in range(nc):
        if cstart[r, column] == cstart[r, column + 1]:
            continue
        for i in range(active):
            t = rows[i]
            if own[t] == column:
                continue
            key_slack, second_slack, group_slack = rslack[t, 0], rslack[t, 1], rslack[t, 2]
            base = _key_part(r, column, rkey[t], key_slack, F, kmin, kmax)
            if base > best[t] * scale:
                continue
            oldest = roldest[t]
            best[t], nearest[t] = _walk(r, column, base, rsec[t], rslack[t, 1], pair, stats, numbers, sec,
                                        cstart, bank, bank_rows, rstat[t], sizes, rslack[t, 2], bound, emb[t],
                                        oldest, rlatest[t], oldest % memory, best[t], nearest[t])
    for t in range(T):
        out[t, b] = np.sqrt(best[t] / F) if best[t] != np.inf else 0.0
    if first < T:
        last[r] = nearest[T - 1]
    if learn:  # the call's stores, in order (the bank, then the index, as the per-row kernel)
        ring[r] = local
        for k in range(n_new):
            t = stores[k]
            number = st0 + k
            slot = number % memory
            for f in range(F):
                bank[r, slot, f] = emb[t, f]
            bank_rows[r, slot] = s0 + t
            _insert(r, number, rkey[t], rsec[t], rstat[t], rtop[t], memory, bank, bank_rows, ranges, ix)
        stored[r] = st0 + n_new
        count[r] = st0 + n_new


@njit(cache=True, nogil=True)
def nearest_windows_batched(scaled, rows, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out,
                            scan, ix):
    """:func:`~sparsernn.detectors.stream.nearest.nearest_windows` (same arguments, same results and state),
    each stream's rows searched together (:func:`_batched_stream`)."""
    T, B, C = scaled.shape
    F = bank.shape[2]
    G = ix[2].shape[1] // 2
    ranges, group_sizes = group_ranges(F, G)
    sizes = np.concatenate((group_sizes, group_sizes))  # (the means', then the deviations')
    emb, emb_t, rstat = np.empty((T, F)), np.empty((F, T)), np.empty((T, 2 * G))
    rkey, rsec, rtop, best, rslack = np.empty(T), np.empty(T), np.empty(T), np.empty(T), np.empty((T, 3))
    nearest, own = np.empty(T, np.int64), np.empty(T, np.int64)
    roldest, rlatest = np.empty(T, np.int64), np.empty(T, np.int64)
    stores = np.empty(2 * T, np.int64)
    bound = np.empty(max(PENDING, CHUNK, T))
    for b in range(B):
        r = rows[b]
        if _scanned(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges, ix,
                    scan):
            continue
        nxt = rows[b + 1] if b + 1 < B else -1  # (its index is prefetched)
        _batched_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out,
                        ranges, sizes, ix, emb, emb_t, rstat, rkey, rsec, rtop, rslack, best, nearest, stores, own,
                        bound, nxt, roldest, rlatest)
