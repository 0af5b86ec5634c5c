"""The window novelty search's index of a stream's stored embeddings (:class:`SearchIndex`), kept up to date.

Per stored embedding: its mean (the *key*), the difference of the means of its two halves (the *second
key*), the means and the standard deviations of ``G = min(GROUPS, F)`` groups of consecutive features (all
for the lower bounds of :mod:`~sparsernn.detectors.stream.nearest`) and its store number. The entries form
a grid: *columns* of keys (the key's range cut at ``ncol - 1`` boundaries, chosen at a rebuild so that a
column holds about ``COLUMN`` entries), each column's entries sorted by the second key. The index is a cache
of the bank (``WindowNovelty.bank``): not saved, rebuilt from the bank (:func:`build_index`, or by the
search, stream by stream) when its count of stores differs from the bank's ``stored``. A new embedding is
appended to an unsorted tail of at most ``PENDING`` entries; when the tail is full it is merged into the
columns (O(memory)) and the entries of the slots overwritten since are dropped; when a column has grown to
more than ``max(4 COLUMN, 2 widest)`` entries (``widest``: the largest column after the last rebuild), the
stream's index is rebuilt from the bank with new boundaries.
"""
from __future__ import annotations

import numpy as np
from numba import njit

PENDING = 128
"""Entries stored since the last merge, at most; a merge into the sorted part (O(memory)) comes every
``PENDING`` stores, and every search checks the unsorted ones (O(PENDING))."""
GROUPS = 4
"""Groups of features in the index (fewer when an embedding has fewer features)."""
COLUMN = 128
"""Entries per column at a rebuild (at most ``COLUMNS`` columns)."""
COLUMNS = 256
"""Columns per stream, at most."""

NAMES = ("keys", "second", "stats", "numbers", "size", "nans", "pending", "count", "absmax", "last", "ncol",
         "cstart", "cbound", "kmin", "kmax", "widest")


class SearchIndex:
    """The per-stream index of the stored embeddings (a cache, see the module's docstring).

    Per entry (``cap = memory + PENDING``): ``keys`` (n, cap) float64, ``second`` (n, cap) float32, ``stats``
    (n, 2 G, cap) float32 (the group means, then the group deviations; see ``_bounds``) and ``numbers`` (n,
    cap) int64, the store number (slot = number % memory; its row is ``bank_rows[slot]`` while it is not
    overwritten). Entries ``[0, size - nans)`` are the columns in order (column ``c``: ``[cstart[c],
    cstart[c + 1])``, keys in ``[cbound[c], cbound[c + 1])`` (``cbound[0]``: -inf), sorted by second key, its
    keys within ``[kmin[c], kmax[c]]``), then ``nans`` entries with a NaN key; ``[memory, memory +
    pending)`` the entries stored since the last merge. Entries of overwritten slots stay until the next
    merge (the search skips them by their store number). 52 bytes per entry with ``F = 8`` (the bank: 32 +
    8 for its row); the search reads the embeddings from the bank. Per stream: ``count`` the stores the
    index reflects (-1: rebuild), ``absmax`` the largest |feature| ever indexed, ``last`` the previous
    row's nearest store number (-1: none), ``ncol`` the columns, ``widest`` the largest column after the
    last rebuild.
    """

    def __init__(self, n: int, memory: int, features: int) -> None:
        self.memory, self.features = memory, features
        cap, g = memory + PENDING, min(GROUPS, features)
        self.keys = np.zeros((n, cap))
        self.second = np.zeros((n, cap), dtype=np.float32)
        self.stats = np.zeros((n, 2 * g, cap), dtype=np.float32)
        self.numbers = np.zeros((n, cap), dtype=np.int64)
        self.size = np.zeros(n, dtype=np.int64)
        self.nans = np.zeros(n, dtype=np.int64)
        self.pending = np.zeros(n, dtype=np.int64)
        self.count = np.full(n, -1, dtype=np.int64)
        self.absmax = np.zeros(n)
        self.last = np.full(n, -1, dtype=np.int64)
        self.ncol = np.ones(n, dtype=np.int64)
        self.cstart = np.zeros((n, COLUMNS + 1), dtype=np.int64)
        self.cbound = np.full((n, COLUMNS), -np.inf)
        self.kmin = np.zeros((n, COLUMNS))
        self.kmax = np.zeros((n, COLUMNS))
        self.widest = np.zeros(n, dtype=np.int64)

    def grow(self, n: int) -> "SearchIndex":
        """A copy with ``n`` more (empty, to be built) streams."""
        more = SearchIndex(n, self.memory, self.features)
        out = SearchIndex(0, self.memory, self.features)
        for name in NAMES:
            setattr(out, name, np.concatenate([getattr(self, name), getattr(more, name)]))
        return out

    def arrays(self) -> tuple:
        """The arrays, as the kernels take them (one tuple)."""
        return tuple(getattr(self, name) for name in NAMES)

    def nbytes(self) -> int:
        """Bytes of the index's arrays."""
        return sum(getattr(self, name).nbytes for name in NAMES)


@njit(cache=True, nogil=True, inline="always")
def _bounds(ranges, vector, stats):
    """The mean of ``vector`` (the key), the mean of its first ``F // 2`` features minus the mean of the
    others (the second key; 0 when ``F == 1``) and its largest |value| (returned); its ``G`` group means,
    then its ``G`` group standard deviations (``sqrt(sum((x - mean_j)^2) / g_j)`` over group ``j``),
    written to ``stats (2 G,)``."""
    F, total, top, G = len(vector), 0.0, 0.0, len(ranges) - 1
    for j in range(G):
        part = 0.0
        for f in range(ranges[j], ranges[j + 1]):
            part += vector[f]
            top = max(top, abs(vector[f]))
        mean = part / (ranges[j + 1] - ranges[j])
        spread = 0.0
        for f in range(ranges[j], ranges[j + 1]):
            spread += (vector[f] - mean) * (vector[f] - mean)
        stats[j] = mean
        stats[G + j] = np.sqrt(spread / (ranges[j + 1] - ranges[j]))
        total += part
    half, first, rest = F // 2, 0.0, 0.0
    for f in range(half):
        first += vector[f]
    for f in range(half, F):
        rest += vector[f]
    second = first / half - rest / (F - half) if half > 0 else 0.0
    return total / F, second, top


@njit(cache=True, nogil=True, inline="always")
def _slack(top, F):
    """What the key (float64), the second key (float32) and the group means and deviations (float32) may be
    off by, at most, for features of magnitude up to ``top``: (key, second, group) slacks, generous. (A
    group's deviation is at most ``2 top``, the second key too; float32 rounds them by at most ``top *
    2**-23``, float64 arithmetic by far less.)"""
    return top * (F + 4) * 2.0 ** -50, top * (2.0 ** -21 + (F + 8) * 2.0 ** -49), \
        top * (2.0 ** -22 + (F + 8) * 2.0 ** -50)


@njit(cache=True, nogil=True, inline="always")
def _column_of(cbound, r, ncol, key):
    """The column of ``key``: the last ``c < ncol`` with ``cbound[r, c] <= key`` (``cbound[r, 0]`` is -inf)."""
    lo, hi = 1, ncol
    while lo < hi:
        mid = (lo + hi) // 2
        if cbound[r, mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@njit(cache=True, nogil=True, inline="always")
def _insert(r, number, key, second, values, top, memory, bank, bank_rows, ranges, ix):
    """Append store ``number`` (its bank slot already written) to stream ``r``'s unsorted entries, merging
    them first when full (and rebuilding the stream's index from the bank when a column has grown too
    wide: the new store is then in it)."""
    keys, sec, stats, numbers, size, nans, pending, count, absmax, last, ncol, cstart, cbound, kmin, kmax, \
        widest = ix
    if pending[r] == PENDING:
        if _merge(r, number - memory + 1, memory, ix):
            _rebuild(r, number + 1, bank, bank_rows, ranges, ix)
            return
    at = memory + pending[r]
    keys[r, at] = key
    sec[r, at] = np.float32(second)
    for j in range(len(values)):
        stats[r, j, at] = np.float32(values[j])
    numbers[r, at] = number
    pending[r] += 1
    absmax[r] = max(absmax[r], top)


@njit(cache=True, nogil=True)
def _merge(r, oldest, memory, ix):
    """Merge stream ``r``'s unsorted entries into the columns, dropping the entries older than store number
    ``oldest`` (overwritten). True when a column is now wider than ``max(4 COLUMN, 2 widest)``."""
    keys, sec, stats, numbers, size, nans, pending, count, absmax, last, ncol, cstart, cbound, kmin, kmax, \
        widest = ix
    S, nc = stats.shape[1], ncol[r]
    n_pend = pending[r]
    fresh = np.empty(n_pend, dtype=np.int64)  # the live pending positions with a key, by (column, second)
    n_fresh = 0
    for p in range(n_pend):
        if numbers[r, memory + p] >= oldest and keys[r, memory + p] == keys[r, memory + p]:
            fresh[n_fresh] = memory + p
            n_fresh += 1
    fresh = fresh[:n_fresh][np.argsort(sec[r, fresh[:n_fresh]], kind="mergesort")]
    cols = np.empty(n_fresh, dtype=np.int64)
    per = np.zeros(nc + 1, dtype=np.int64)
    for i in range(n_fresh):
        cols[i] = _column_of(cbound, r, nc, keys[r, fresh[i]])
        per[cols[i] + 1] += 1
    for c in range(nc):
        per[c + 1] += per[c]
    bycol = np.empty(n_fresh, dtype=np.int64)  # stable counting sort by column
    fill = per[:nc].copy()
    for i in range(n_fresh):
        bycol[fill[cols[i]]] = fresh[i]
        fill[cols[i]] += 1
    total = size[r] + n_pend
    out_keys, out_sec, out_numbers = np.empty(total), np.empty(total, np.float32), np.empty(total, np.int64)
    out_stats = np.empty((S, total), dtype=np.float32)
    starts = np.empty(nc + 1, dtype=np.int64)
    n, wide = 0, 0
    for c in range(nc):
        starts[c] = n
        a, a_end, b, b_end = cstart[r, c], cstart[r, c + 1], per[c], per[c + 1]
        low, high = np.inf, -np.inf
        while a < a_end or b < b_end:
            if b >= b_end or (a < a_end and sec[r, a] <= sec[r, bycol[b]]):
                src = a
                a += 1
            else:
                src = bycol[b]
                b += 1
            if numbers[r, src] < oldest:
                continue
            out_keys[n], out_sec[n], out_numbers[n] = keys[r, src], sec[r, src], numbers[r, src]
            out_stats[:, n] = stats[r, :, src]
            low, high = min(low, keys[r, src]), max(high, keys[r, src])
            n += 1
        kmin[r, c], kmax[r, c] = low, high
        wide = max(wide, n - starts[c])
    starts[nc] = n
    n_nan = 0
    for p in range(size[r] - nans[r], size[r] + n_pend):  # the NaN keys, old then new
        src = p if p < size[r] else memory + p - size[r]
        if numbers[r, src] >= oldest and keys[r, src] != keys[r, src]:
            out_keys[n], out_sec[n], out_numbers[n] = keys[r, src], sec[r, src], numbers[r, src]
            out_stats[:, n] = stats[r, :, src]
            n += 1
            n_nan += 1
    keys[r, :n] = out_keys[:n]
    sec[r, :n] = out_sec[:n]
    numbers[r, :n] = out_numbers[:n]
    stats[r, :, :n] = out_stats[:, :n]
    cstart[r, :nc + 1] = starts
    size[r], nans[r], pending[r] = n, n_nan, 0
    return wide > max(4 * COLUMN, 2 * widest[r])


@njit(cache=True, nogil=True)
def _rebuild(r, st, bank, bank_rows, ranges, ix):
    """Stream ``r``'s index from its bank after ``st`` stores: every filled slot with a row, in new columns
    of about ``COLUMN`` entries (each sorted by second key)."""
    keys, sec, stats, numbers, size, nans, pending, count, absmax, last, ncol, cstart, cbound, kmin, kmax, \
        widest = ix
    memory, F, S = bank.shape[1], bank.shape[2], stats.shape[1]
    vector, values = np.empty(F), np.empty(S)
    m = min(st, memory)
    t_keys, t_sec, t_numbers = np.empty(m), np.empty(m, np.float32), np.empty(m, np.int64)
    t_stats = np.empty((S, m), dtype=np.float32)
    n, top_all = 0, 0.0
    for slot in range(m):
        if bank_rows[r, slot] < 0:
            continue
        for f in range(F):
            vector[f] = bank[r, slot, f]
        key, second, top = _bounds(ranges, vector, values)
        t_keys[n], t_sec[n] = key, np.float32(second)
        t_numbers[n] = slot if st <= memory else st - memory + (slot - st) % memory
        for j in range(S):
            t_stats[j, n] = np.float32(values[j])
        top_all = max(top_all, top)
        n += 1
    order = np.argsort(t_keys[:n], kind="mergesort")  # NaN last
    n_fin = 0
    while n_fin < n and t_keys[order[n_fin]] == t_keys[order[n_fin]]:
        n_fin += 1
    nc = min(COLUMNS, max(1, (n_fin + COLUMN - 1) // COLUMN))
    cbound[r, 0] = -np.inf
    for c in range(1, nc):
        cbound[r, c] = t_keys[order[c * n_fin // nc]]
    # the columns' entries: by key, then each column by second key
    at, wide = 0, 0
    for c in range(nc):
        lo = at
        while at < n_fin and (c == nc - 1 or t_keys[order[at]] < cbound[r, c + 1]):
            at += 1
        cstart[r, c] = lo
        part = order[lo:at][np.argsort(t_sec[order[lo:at]], kind="mergesort")]
        low, high = np.inf, -np.inf
        for i in range(at - lo):
            src = part[i]
            keys[r, lo + i], sec[r, lo + i], numbers[r, lo + i] = t_keys[src], t_sec[src], t_numbers[src]
            for j in range(S):
                stats[r, j, lo + i] = t_stats[j, src]
            low, high = min(low, t_keys[src]), max(high, t_keys[src])
        kmin[r, c], kmax[r, c] = low, high
        wide = max(wide, at - lo)
    cstart[r, nc] = n_fin
    for i in range(n_fin, n):
        src = order[i]
        keys[r, i], sec[r, i], numbers[r, i] = t_keys[src], t_sec[src], t_numbers[src]
        for j in range(S):
            stats[r, j, i] = t_stats[j, src]
    ncol[r], widest[r] = nc, wide
    size[r], nans[r], pending[r], absmax[r], last[r] = n, n - n_fin, 0, top_all, -1
    count[r] = st


@njit(cache=True, nogil=True)
def build_index(stored, bank, bank_rows, ix):
    """Build the index of every stream whose ``count`` differs from ``stored`` (the search does this
    lazily, stream by stream)."""
    ranges, _ = group_ranges(bank.shape[2], ix[2].shape[1] // 2)
    count = ix[7]
    for r in range(len(stored)):
        if count[r] != stored[r]:
            _rebuild(r, stored[r], bank, bank_rows, ranges, ix)


@njit(cache=True, nogil=True)
def group_ranges(F, G):
    """The feature ranges of the ``G`` groups (``G + 1`` bounds) and their sizes (float64)."""
    ranges = np.empty(G + 1, dtype=np.int64)
    for j in range(G + 1):
        ranges[j] = j * F // G
    sizes = np.empty(G)
    for j in range(G):
        sizes[j] = ranges[j + 1] - ranges[j]
    return ranges, sizes
