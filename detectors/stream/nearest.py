"""The window novelty's nearest-neighbour search, compiled (numba) and pruned: :func:`nearest_windows`.

:meth:`WindowNovelty._novelty_reference <sparsernn.detectors.stream.novelty.WindowNovelty._novelty_reference>`
is the plain NumPy definition, one time step at a time over all ``memory``
slots of every stream's bank; this kernel computes the same novelties and
leaves the same state, stream by stream, row by row:

1. the embedding of the row (the ring and the block means, summed in the same
   order as NumPy's ``mean`` over a block: first element, then the others,
   then divided by ``block``), rounded to float32, the bank's precision, like
   the reference's;
2. its nearest neighbour among the stored embeddings it may see: a slot is a
   neighbour of row ``t`` from the first row that is ``exclude`` rows after
   the one it ends at, until the row whose store overwrites it (the store of
   row ``t`` comes after its search);
3. with ``learn``, every ``block`` rows once the window is complete, the
   embedding is written to the bank's next slot (a ring), in place.

The search does not compare the row with every slot. Each stream keeps an
*index* of its stored embeddings
(:class:`~sparsernn.detectors.stream.search_index.SearchIndex`, a cache rebuilt
from the bank when it does not match it): per embedding its mean (the key), the
means of ``G = min(4, F)`` groups of consecutive features and a copy of the
embedding, the entries sorted by key. Two lower bounds of a squared distance
follow from Cauchy-Schwarz (``F`` features, group ``j`` of ``g_j`` features)::

    ||a - b||^2 >= sum_j g_j * (mean_j(a) - mean_j(b))^2 >= F * (mean(a) - mean(b))^2

The row's search starts from the previous row's nearest embedding and the
stores either side of it (an upper bound), checks the entries stored since
the last merge (unsorted, at most ``PENDING``), then walks the sorted entries
outwards from the row's key, ``CHUNK`` at a time, and stops in each direction
at the first key whose bound exceeds the best distance so far; within a chunk
the group bounds are computed for all (a vectorised pass) and only the entries
whose group bound does not exceed the best so far get the full distance (from
the index's copy, so that the walk stays in contiguous memory).

Nothing is approximated: every distance that is computed is the same float64
number as before (the float32 embeddings as float64, squared differences
summed over the features in order, then divided by ``F``), and an embedding
is skipped only when its bound, made smaller by more than the rounding of the
key and group means (``_slack``), still exceeds the best distance so far by a
relative 1e-9, so that it cannot be smaller than that best distance. NaN in
an embedding or in a neighbour makes the novelty NaN, as ``np.min`` does (a
NaN key is never pruned; such entries sit after the sorted ones).

The index is not part of the saved state: it is rebuilt (per stream) when
its count of stores differs from ``stored``, e.g. after a load. Code that
writes ``bank`` in place without changing ``stored`` must call
:meth:`WindowNovelty.reindex <sparsernn.detectors.stream.novelty.WindowNovelty.reindex>`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .search_index import PENDING, SearchIndex, _bounds, _insert, _rebuild, _slack, build_index, group_ranges

__all__ = ["SearchIndex", "build_index", "nearest_windows"]

SCAN = 1024
"""A stream with at most this many stored embeddings (those of the call included) is compared with all of
them (:func:`_scan_stream`, slot by slot, vectorised over the rows), not searched through the index."""
CHUNK = 32
"""Sorted entries per group-bound pass of the search."""
RELATIVE = 1e-9
"""An entry is skipped when its bound exceeds ``best * (1 + RELATIVE)``."""


@njit(cache=True, nogil=True, inline="always")
def _embed(local, now, window, block, out):
    """The embedding ending at row ``now`` into ``out (window * C,)``: the means of ``window`` blocks of the
    ring ``local (window * block, C)``, oldest first (the row after ``now`` is the oldest kept), rounded to
    float32, the bank's precision."""
    span, C = local.shape
    for w in range(window):
        first = now + 1 + w * block
        for c in range(C):
            total = local[first % span, c]
            for k in range(1, block):
                total += local[(first + k) % span, c]
            out[w * C + c] = np.float32(total / block)


@njit(cache=True, nogil=True, inline="always")
def _distance(bank, r, slot, embedding):
    """The squared distance of the embedding (float64) to the stored one at ``bank[r, slot]`` (float32),
    summed over the features in order."""
    total = 0.0
    for f in range(len(embedding)):
        diff = np.float64(bank[r, slot, f]) - embedding[f]
        total += diff * diff
    return total


@njit(cache=True, nogil=True, inline="always")
def _visible(numbers, bank_rows, r, at, oldest, latest, memory):
    """Entry ``at`` is not overwritten (store number >= ``oldest``) and ends at ``latest`` or before (its
    row in the bank, which holds it while it is not overwritten)."""
    number = numbers[r, at]
    return number >= oldest and bank_rows[r, number % memory] <= latest


@njit(cache=True, nogil=True, inline="always")
def _bound_pass(stats, r, lo, hi, values, sizes, slack, bound):
    """The group bounds of entries ``lo..hi-1`` into ``bound[0:hi-lo]`` (a loop LLVM vectorises):
    ``sum_j g_j ((mean_j(a) - mean_j(b))^2 + (sd_j(a) - sd_j(b))^2)``, each difference first reduced by
    ``slack``. ``values``: the query's group means then deviations; ``sizes``: ``g_j``, twice."""
    width = hi - lo
    for i in range(width):
        bound[i] = 0.0
    for j in range(len(values)):
        mean, size, part = values[j], sizes[j], stats[r, j, lo:hi]
        for i in range(width):
            diff = max(abs(np.float64(part[i]) - mean) - slack, 0.0)
            bound[i] += size * diff * diff


@njit(cache=True, nogil=True, inline="always")
def _first_at_least(keys, r, n, value):
    """The first position in the sorted keys ``[0, n)`` whose key is >= ``value``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[r, mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _chunk(lo, hi, stats, numbers, bank, bank_rows, r, values, sizes, slack, bound, embedding, oldest, latest,
           best, nearest):
    """The sorted entries ``lo..hi-1``: (best, nearest) after those whose group bound allows it."""
    _bound_pass(stats, r, lo, hi, values, sizes, slack, bound)
    scale = 1.0 + RELATIVE
    memory = bank.shape[1]
    for i in range(hi - lo):
        if bound[i] > best * scale:
            continue
        at = lo + i
        if _visible(numbers, bank_rows, r, at, oldest, latest, memory):
            number = numbers[r, at]
            d = _distance(bank, r, number % memory, embedding)
            if d < best:
                best, nearest = d, number
    return best, nearest


@njit(cache=True, nogil=True)
def _search(r, now, cnt, embedding, key, values, sizes, top, bank, bank_rows, exclude, keys, stats, numbers, size,
            nans, pending, absmax, last, bound):
    """The smallest squared distance of the embedding to an embedding row ``now`` may see (``cnt`` stores
    so far): inf if none, NaN if a NaN is involved. Updates ``last[r]``; ``bound``: scratch (memory,)."""
    memory, F = bank.shape[1], bank.shape[2]
    oldest = cnt - memory  # store numbers below it are overwritten
    latest = now - exclude  # a neighbour ends at this row or before
    best, nearest = np.inf, -1
    if key != key:  # a NaN embedding: NaN if it has any neighbour
        for at in range(size[r]):
            if _visible(numbers, bank_rows, r, at, oldest, latest, memory):
                return np.nan
        for at in range(memory, memory + pending[r]):
            if _visible(numbers, bank_rows, r, at, oldest, latest, memory):
                return np.nan
        return np.inf
    for at in range(size[r] - nans[r], size[r]):  # neighbours with a NaN
        if _visible(numbers, bank_rows, r, at, oldest, latest, memory):
            return np.nan
    key_slack, group_slack = _slack(max(top, absmax[r]), F)
    scale = 1.0 + RELATIVE
    for number in range(last[r] - 1, last[r] + 2):  # the previous row's nearest and the stores either
        # side of it (the windows a block earlier and later), if neighbours: a first upper bound
        if number >= 0 and number >= oldest and number < cnt and bank_rows[r, number % memory] <= latest:
            d = _distance(bank, r, number % memory, embedding)  # (NaN: found below)
            if d < best:
                best, nearest = d, number
    # the unsorted entries
    _bound_pass(stats, r, memory, memory + pending[r], values, sizes, group_slack, bound)
    for i in range(pending[r]):
        at = memory + i
        if bound[i] > best * scale and keys[r, at] == keys[r, at]:
            continue  # (a NaN key: NaN in some group, whose bound says nothing)
        if not _visible(numbers, bank_rows, r, at, oldest, latest, memory):
            continue
        number = numbers[r, at]
        d = _distance(bank, r, number % memory, embedding)
        if d != d:
            last[r] = number
            return np.nan
        if d < best:
            best, nearest = d, number
    # the sorted entries, outwards from the row's key in chunks (group bounds, then the distances of the
    # entries whose bound does not exceed the best so far), each way until a key is too far
    n = size[r] - nans[r]
    up = _first_at_least(keys, r, n, key)
    down = up
    while up < n or down > 0:
        radius = np.sqrt(best * scale / F) + key_slack
        if up < n:
            if keys[r, up] - key > radius:
                up = n
            else:
                best, nearest = _chunk(up, min(up + CHUNK, n), stats, numbers, bank, bank_rows, r, values, sizes,
                                       group_slack, bound, embedding, oldest, latest, best, nearest)
                up += CHUNK
        if down > 0:
            if key - keys[r, down - 1] > radius:
                down = 0
            else:
                best, nearest = _chunk(max(down - CHUNK, 0), down, stats, numbers, bank, bank_rows, r, values,
                                       sizes, group_slack, bound, embedding, oldest, latest, best, nearest)
                down -= CHUNK
    last[r] = nearest
    return best


@njit(cache=True, nogil=True)
def _scan_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges,
                 keys, stats, numbers, size, nans, pending, absmax, last):
    """Stream ``r`` (column ``b``) of :func:`nearest_windows` without the index: every stored embedding
    (the filled part of the bank, then the ones stored during the call) compared with the rows of the
    call that may see it, the rows as the inner, vectorised loop (cheaper than the pruned search while
    a stream has few stored embeddings). The stores go to the bank and the index as in the search."""
    T, C = scaled.shape[0], scaled.shape[2]
    span = window * block
    memory, F = bank.shape[1], bank.shape[2]
    embeddings = np.empty((F, T))
    vector = np.empty(F)
    acc, best = np.empty(T), np.empty(T)
    usable = np.empty(T, dtype=np.bool_)
    stores = np.empty(T, dtype=np.int64)  # the rows of the call whose embedding is stored, in order
    local = ring[r].copy()
    s0, st0 = seen[r], stored[r]
    n_new = 0
    for t in range(T):  # the ring, the embeddings, the stores
        now = s0 + t
        for c in range(C):
            local[now % span, c] = scaled[t, b, c]
        _embed(local, now, window, block, embeddings[:, t])
        if learn and now + 1 >= span and (now + 1) % block == 0:
            stores[n_new] = t
            n_new += 1
    best[:] = np.inf
    usable[:] = False
    filled = min(st0, memory)
    for i in range(filled + n_new):  # every embedding the rows of the call may see
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
        # squared distances (summed over the features) to the rows lo..hi; the running minimum takes them
        # (NaN sticks, as in np.min). Loops over views from 0: LLVM vectorises them
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
    last[r] = -1
    if learn:
        ring[r] = local
        values = np.empty(stats.shape[1])
        for k in range(n_new):
            number = st0 + k
            slot = number % memory
            for f in range(F):
                vector[f] = embeddings[f, stores[k]]
                bank[r, slot, f] = vector[f]
            bank_rows[r, slot] = s0 + stores[k]
            key, top = _bounds(ranges, vector, values)
            _insert(keys, stats, numbers, size, nans, pending, absmax, r, number, key, values, top, memory)
        stored[r] = st0 + n_new


@njit(cache=True, nogil=True)
def nearest_windows(scaled, rows, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, scan,
                    keys, stats, numbers, size, nans, pending, count, absmax, last):
    """Novelties ``out`` (T, B) of the scaled values ``scaled`` (T, B, C) of distinct streams ``rows`` (B,).

    ``ring`` (n, span, C) float64, ``seen`` (n,) and ``stored`` (n,) int64, ``bank`` (n, memory, F)
    float32 and ``bank_rows`` (n, memory) int64 are the wrapper's arrays (all streams); with ``learn``
    the ring, bank, bank_rows and stored of ``rows`` advance past the call, in place (``seen`` is
    the caller's). ``keys`` ... ``last``: the :class:`SearchIndex`'s arrays, rebuilt per stream where
    ``count`` differs from ``stored``, kept up to date with the stores. A stream with at most ``scan``
    stored embeddings (those of the call included; default of the wrapper: ``SCAN``) is compared with all.
    """
    T, B, C = scaled.shape
    span = window * block
    memory, F = bank.shape[1], bank.shape[2]
    G = stats.shape[1] // 2
    ranges, group_sizes = group_ranges(F, G)
    sizes = np.concatenate((group_sizes, group_sizes))  # (the means', then the deviations')
    embedding = np.empty(F)
    values = np.empty(2 * G)
    bound = np.empty(max(memory, PENDING))
    local = np.empty((span, C))
    for b in range(B):
        r = rows[b]
        s0 = seen[r]
        cnt = stored[r]
        if count[r] != cnt:
            _rebuild(r, stored, bank, bank_rows, ranges, keys, stats, numbers, size, nans, pending, count,
                     absmax, last)
        if min(cnt, memory) + (T // block + 1 if learn else 0) <= scan:  # few stored: compare with all
            _scan_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out,
                         ranges, keys, stats, numbers, size, nans, pending, absmax, last)
            count[r] = stored[r]
            continue
        local[:, :] = ring[r]
        for t in range(T):
            now = s0 + t
            for c in range(C):
                local[now % span, c] = scaled[t, b, c]
            if now + 1 < span:  # the window is not complete: no novelty, no store
                out[t, b] = 0.0
                continue
            _embed(local, now, window, block, embedding)
            key, top = _bounds(ranges, embedding, values)
            best = _search(r, now, cnt, embedding, key, values, sizes, top, bank, bank_rows, exclude, keys, stats,
                           numbers, size, nans, pending, absmax, last, bound)
            out[t, b] = np.sqrt(best / F) if best != np.inf else 0.0
            if learn and (now + 1) % block == 0:
                slot = cnt % memory
                for f in range(F):
                    bank[r, slot, f] = embedding[f]
                bank_rows[r, slot] = now
                _insert(keys, stats, numbers, size, nans, pending, absmax, r, cnt, key, values, top, memory)
                cnt += 1
        if learn:
            ring[r] = local
            stored[r] = cnt
            count[r] = cnt
