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
difference of the means of its two halves (the second key), the means and the
standard deviations of ``G = min(4, F)`` groups of consecutive features, and
its store number, the entries in a grid: columns of keys, each sorted by second
key. Lower bounds of a squared distance (``F`` features, group ``j`` of ``g_j``
features, halves of ``h`` and ``F - h`` features, ``s`` the second key): per
group the squared distance is ``g_j (mean_j(a) - mean_j(b))^2`` plus that of the
centred features, at least ``g_j (sd_j(a) - sd_j(b))^2`` (the triangle
inequality on the centred parts), so::

    ||a - b||^2 >= sum_j g_j ((mean_j(a) - mean_j(b))^2 + (sd_j(a) - sd_j(b))^2)
    ||a - b||^2 >= F (mean(a) - mean(b))^2 + h (F - h) / F * (s(a) - s(b))^2

(the second: two orthonormal directions of the features). The row's search
starts from the previous row's nearest embedding and the stores either side of
it (an upper bound), checks the entries stored since the last merge
(unsorted, at most ``PENDING``), then visits the columns nearest key range
first and stops when a column's keys are too far for the best distance so far;
in a column it walks the entries outwards from the row's second key, ``CHUNK``
at a time, each way until the second bound with the column's key gap exceeds
the best so far. Within a chunk the group means' part of the first bound is
computed for all (a vectorised pass), the deviations' part where that is not
enough, and only the entries whose bound does not exceed the best so far get
the full distance (from the bank).

Nothing is approximated: every distance that is computed is the same float64
number as before (the float32 embeddings as float64, squared differences
summed over the features in order, then divided by ``F``), and an embedding
is skipped only when its bound, each difference first made smaller by more
than the rounding of the keys and group statistics (``_slack``), still
exceeds the best distance so far by a relative 1e-9, so that it cannot be
smaller than that best distance. NaN in
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

from .search_index import PENDING, SearchIndex, _bounds, _column_of, _insert, _rebuild, _slack, build_index, group_ranges

__all__ = ["SearchIndex", "build_index", "nearest_windows"]

SCAN = 1024
"""A stream with at most this many stored embeddings (those of the call included) is compared with all of
them (:func:`_scan_stream`, slot by slot, vectorised over the rows), not searched through the index."""
CHUNK = 16
"""Sorted entries per group-bound pass of the search."""
RELATIVE = 1e-9
"""An entry is skipped when its bound exceeds ``best * (1 + RELATIVE)``."""


@njit(cache=True, nogil=True, inline="always")
def _embed(local, now, window, block, out):
    """The embedding ending at row ``now`` into ``out (window * C,)``: the means of ``window`` blocks of the
    ring ``local (window * block, C)``, oldest first (the row after ``now`` is the oldest kept), rounded to
    float32, the bank's precision."""
    span, C = local.shape
    start = (now + 1) % span  # (positions wrapped by a subtraction: an integer division costs ~30 cycles)
    for w in range(window):
        first = start + w * block
        for c in range(C):
            at = first if first < span else first - span
            total = local[at, c]
            for k in range(1, block):
                at = first + k if first + k < span else first + k - span
                total += local[at, c]
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
def _slot(number, oldest, first_slot, memory):
    """The bank slot of store ``number`` in ``[oldest, oldest + memory)`` (``first_slot``: ``oldest %
    memory``), without an integer division."""
    slot = first_slot + (number - oldest)
    return slot - memory if slot >= memory else slot


@njit(cache=True, nogil=True, inline="always")
def _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
    """Entry ``at`` is not overwritten (store number >= ``oldest``) and ends at ``latest`` or before (its
    row in the bank, which holds it while it is not overwritten)."""
    number = numbers[r, at]
    return number >= oldest and bank_rows[r, _slot(number, oldest, first_slot, memory)] <= latest


@njit(cache=True, nogil=True, inline="always")
def _bound_pass(stats, r, lo, hi, values, sizes, slack, bound, first, stop):
    """The group bounds of entries ``lo..hi-1`` into ``bound[0:hi-lo]`` (a loop LLVM vectorises): the sum
    over statistics ``j`` in ``[first, stop)`` of ``g_j (stat_j(a) - stat_j(b))^2``, each difference first
    reduced by ``slack``. The statistics (``values``: the query's; ``sizes``: ``g_j``, twice) are the group
    means then the group deviations; over all of them the bound is
    ``sum_j g_j ((mean_j(a) - mean_j(b))^2 + (sd_j(a) - sd_j(b))^2)``."""
    width = hi - lo
    for i in range(width):
        bound[i] = 0.0
    for j in range(first, stop):
        mean, size, part = values[j], sizes[j], stats[r, j, lo:hi]
        for i in range(width):
            diff = max(abs(np.float64(part[i]) - mean) - slack, 0.0)
            bound[i] += size * diff * diff


@njit(cache=True, nogil=True, inline="always")
def _first_at_least(values, r, lo, hi, value):
    """The first position in the sorted ``values[r, lo:hi]`` whose value is >= ``value`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if values[r, mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _reduced(diff, slack):
    """``max(|diff| - slack, 0)``: a difference of rounded values made smaller than the exact one."""
    return max(abs(diff) - slack, 0.0)


@njit(cache=True, nogil=True, inline="always")
def _chunk(lo, hi, stats, numbers, bank, bank_rows, r, values, sizes, slack, bound, embedding, oldest, latest,
           first_slot, best, nearest):
    """The sorted entries ``lo..hi-1``: (best, nearest) after those whose group bound allows it (the means'
    part for all, vectorised, then the deviations' part where that is not enough)."""
    G = len(values) // 2
    _bound_pass(stats, r, lo, hi, values, sizes, slack, bound, 0, G)
    scale = 1.0 + RELATIVE
    memory = bank.shape[1]
    for i in range(hi - lo):
        if bound[i] > best * scale:
            continue
        at = lo + i
        total = bound[i]
        for j in range(G, 2 * G):
            diff = max(abs(np.float64(stats[r, j, at]) - values[j]) - slack, 0.0)
            total += sizes[j] * diff * diff
        if total > best * scale:
            continue
        if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
            number = numbers[r, at]
            d = _distance(bank, r, _slot(number, oldest, first_slot, memory), embedding)
            if d < best:
                best, nearest = d, number
    return best, nearest


@njit(cache=True, nogil=True, inline="always")
def _unsorted(r, n_pend, stats, keys, numbers, bank, bank_rows, values, sizes, group_slack, bound, embedding,
              oldest, latest, first_slot, best, nearest):
    """The index's unsorted entries (stored since its last rebuild) for one row: group bounds, then the
    distances of the visible entries whose bound does not exceed the best so far: (best, nearest) after
    them; a NaN distance stops the pass and comes back as ``best`` (its entry as ``nearest``)."""
    memory = bank.shape[1]
    scale = 1.0 + RELATIVE
    _bound_pass(stats, r, memory, memory + n_pend, values, sizes, group_slack, bound, 0, len(values))
    for i in range(n_pend):
        at = memory + i
        if bound[i] > best * scale and keys[r, at] == keys[r, at]:
            continue  # (a NaN key: NaN in some group, whose bound says nothing)
        if not _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
            continue
        number = numbers[r, at]
        d = _distance(bank, r, _slot(number, oldest, first_slot, memory), embedding)
        if d != d:
            return d, number
        if d < best:
            best, nearest = d, number
    return best, nearest


@njit(cache=True, nogil=True, inline="always")
def _walk(r, column, base, second, second_slack, pair, stats, numbers, sec, cstart, bank, bank_rows, values,
          sizes, group_slack, bound, embedding, oldest, latest, first_slot, best, nearest):
    """Column ``column``'s entries for one row (key part of the bound ``base``), outwards from the row's
    second key in chunks, each way until the second key is too far: (best, nearest) after them."""
    scale = 1.0 + RELATIVE
    lo, hi = cstart[r, column], cstart[r, column + 1]
    up = _first_at_least(sec, r, lo, hi, second)
    down = up
    while up < hi or down > lo:
        if up < hi:
            diff = _reduced(np.float64(sec[r, up]) - second, second_slack)
            if base + pair * diff * diff > best * scale:
                up = hi
            else:
                best, nearest = _chunk(up, min(up + CHUNK, hi), stats, numbers, bank, bank_rows, r, values,
                                       sizes, group_slack, bound, embedding, oldest, latest, first_slot, best,
                                       nearest)
                up += CHUNK
        if down > lo:
            diff = _reduced(second - np.float64(sec[r, down - 1]), second_slack)
            if base + pair * diff * diff > best * scale:
                down = lo
            else:
                best, nearest = _chunk(max(down - CHUNK, lo), down, stats, numbers, bank, bank_rows, r, values,
                                       sizes, group_slack, bound, embedding, oldest, latest, first_slot, best,
                                       nearest)
                down -= CHUNK
    return best, nearest


@njit(cache=True, nogil=True, inline="always")  # (a call with this many arrays costs ~0.3 us)
def _search(r, now, cnt, embedding, key, second, values, sizes, top, bank, bank_rows, exclude, ix, bound):
    """The smallest squared distance of the embedding to an embedding row ``now`` may see (``cnt`` stores
    so far): inf if none, NaN if a NaN is involved. Updates ``last[r]``; ``bound``: scratch (memory,)."""
    keys, sec, stats, numbers, size, nans, pending, count, absmax, last, ncol, cstart, cbound, kmin, kmax, \
        widest = ix
    memory, F = bank.shape[1], bank.shape[2]
    half = F // 2
    pair = half * (F - half) / F  # the second key's factor in the bound
    oldest = cnt - memory  # store numbers below it are overwritten
    first_slot = oldest % memory
    latest = now - exclude  # a neighbour ends at this row or before
    best, nearest = np.inf, -1
    if key != key:  # a NaN embedding: NaN if it has any neighbour
        for at in range(size[r]):
            if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
                return np.nan
        for at in range(memory, memory + pending[r]):
            if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
                return np.nan
        return np.inf
    for at in range(size[r] - nans[r], size[r]):  # neighbours with a NaN
        if _visible(numbers, bank_rows, r, at, oldest, latest, first_slot, memory):
            return np.nan
    key_slack, second_slack, group_slack = _slack(max(top, absmax[r]), F)
    scale = 1.0 + RELATIVE
    for number in range(last[r] - 1, last[r] + 2):  # the previous row's nearest and the stores either
        # side of it (the windows a block earlier and later), if neighbours: a first upper bound
        if number >= 0 and number >= oldest and number < cnt:
            slot = _slot(number, oldest, first_slot, memory)
            if bank_rows[r, slot] > latest:
                continue
            d = _distance(bank, r, slot, embedding)  # (NaN: found below)
            if d < best:
                best, nearest = d, number
    best, nearest = _unsorted(r, pending[r], stats, keys, numbers, bank, bank_rows, values, sizes, group_slack,
                              bound, embedding, oldest, latest, first_slot, best, nearest)
    if best != best:
        last[r] = nearest
        return np.nan
    # the columns, nearest key range first, each way until a column's keys are too far; in a column the
    # entries outwards from the row's second key in chunks (group bounds, then the distances of the entries
    # whose bound does not exceed the best so far), each way until a second key is too far
    nc = ncol[r]
    left = _column_of(cbound, r, nc, key)
    right = left + 1
    while True:
        while left >= 0 and cstart[r, left] == cstart[r, left + 1]:  # (empty columns)
            left -= 1
        while right < nc and cstart[r, right] == cstart[r, right + 1]:
            right += 1
        gap_left = max(key - kmax[r, left], kmin[r, left] - key, 0.0) if left >= 0 else np.inf
        gap_right = max(kmin[r, right] - key, key - kmax[r, right], 0.0) if right < nc else np.inf
        if gap_left <= gap_right:
            column, gap = left, gap_left
            left -= 1
        else:
            column, gap = right, gap_right
            right += 1
        if gap == np.inf:
            break
        base = _reduced(gap, key_slack)
        base = F * base * base
        if base > best * scale:  # every other column's keys are at least as far
            break
        best, nearest = _walk(r, column, base, second, second_slack, pair, stats, numbers, sec, cstart, bank,
                              bank_rows, values, sizes, group_slack, bound, embedding, oldest, latest, first_slot, best,
                              nearest)
    last[r] = nearest
    return best


@njit(cache=True, nogil=True)
def _scan_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges,
                 ix):
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
    ix[9][r] = -1  # last
    if learn:
        ring[r] = local
        values = np.empty(ix[2].shape[1])
        for k in range(n_new):
            number = st0 + k
            slot = number % memory
            for f in range(F):
                vector[f] = embeddings[f, stores[k]]
                bank[r, slot, f] = vector[f]
            bank_rows[r, slot] = s0 + stores[k]
            key, second, top = _bounds(ranges, vector, values)
            _insert(r, number, key, second, values, top, memory, bank, bank_rows, ranges, ix)
        stored[r] = st0 + n_new


@njit(cache=True, nogil=True, inline="always")
def _scanned(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges, ix, scan):
    """Stream ``r``'s index brought up to date with its store; a stream with at most ``scan`` stored
    embeddings (the call's included) has its rows compared with all of them (:func:`_scan_stream`): True
    when that is done, False when the rows are left to the pruned search."""
    cnt, count = stored[r], ix[7]
    if count[r] != cnt:
        _rebuild(r, cnt, bank, bank_rows, ranges, ix)
    if min(cnt, bank.shape[1]) + (scaled.shape[0] // block + 1 if learn else 0) <= scan:  # few: compare with all
        _scan_stream(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out,
                     ranges, ix)
        count[r] = stored[r]
        return True
    return False


@njit(cache=True, nogil=True)
def nearest_windows(scaled, rows, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, scan,
                    ix):
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
    count = ix[7]
    G = ix[2].shape[1] // 2
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
        if _scanned(b, r, scaled, ring, seen, stored, bank, bank_rows, window, block, exclude, learn, out, ranges, ix,
                    scan):
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
            key, second, top = _bounds(ranges, embedding, values)
            best = _search(r, now, cnt, embedding, key, second, values, sizes, top, bank, bank_rows, exclude, ix,
                           bound)
            out[t, b] = np.sqrt(best / F) if best != np.inf else 0.0
            if learn and (now + 1) % block == 0:
                slot = cnt % memory
                for f in range(F):
                    bank[r, slot, f] = embedding[f]
                bank_rows[r, slot] = now
                _insert(r, cnt, key, second, values, top, memory, bank, bank_rows, ranges, ix)
                cnt += 1
        if learn:
            ring[r] = local
            stored[r] = cnt
            count[r] = cnt
