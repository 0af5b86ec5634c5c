"""The window novelty search's index of a stream's stored embeddings (:class:`SearchIndex`), kept up to date.

Per stored embedding: its mean (the sort key), the means of ``G = min(GROUPS, F)`` groups of consecutive
features (both for the lower bounds of :mod:`~sparsernn.detectors.stream.nearest`), a copy of the embedding
and its store number and row. The index is a cache of the bank (``WindowNovelty.bank``): not saved, rebuilt
from the bank (:func:`build_index`, or by the search, stream by stream) when its count of stores differs
from the bank's ``stored``. A new embedding is appended to an unsorted tail of at most ``PENDING`` entries;
when the tail is full it is sorted and merged into the sorted part (O(memory)), and the entries of the slots
overwritten since are dropped.
"""
from __future__ import annotations

import numpy as np
from numba import njit

PENDING = 128
"""Entries stored since the last merge, at most; a merge into the sorted part (O(memory)) comes every
``PENDING`` stores, and every search checks the unsorted ones (O(PENDING))."""
GROUPS = 4
"""Groups of features in the index (fewer when an embedding has fewer features)."""

class SearchIndex:
    """The per-stream index of the stored embeddings (a cache, see the module's docstring).

    ``keys`` (n, cap) float64, ``stats`` (n, 2 G, cap) float32 and ``numbers`` (n, cap) int64 (``cap =
    memory + PENDING``): the key, the group means then the group standard deviations (``_bounds``), and the
    store number (slot = number % memory; its row is ``bank_rows[slot]`` while it is not overwritten) of each
    entry. Entries ``[0, size)`` are the sorted part (``size - nans`` sorted by key, then ``nans`` with a NaN
    key), ``[memory, memory + pending)`` the entries stored since the last merge; entries of overwritten
    slots stay until the next merge (the search skips them by their store number). 48 bytes per entry with
    ``F = 8`` (the bank: 32 + 8 for its row); the search reads the embeddings from the bank.
    ``count`` (n,): the stores the index reflects (-1: rebuild); ``absmax`` (n,): the largest |feature|
    ever indexed; ``last`` (n,): the previous row's nearest store number (-1: none).
    """

    def __init__(self, n: int, memory: int, features: int) -> None:
        self.memory, self.features = memory, features
        cap, g = memory + PENDING, min(GROUPS, features)
        self.keys = np.zeros((n, cap))
        self.stats = np.zeros((n, 2 * g, cap), dtype=np.float32)
        self.numbers = np.zeros((n, cap), dtype=np.int64)
        self.size = np.zeros(n, dtype=np.int64)
        self.nans = np.zeros(n, dtype=np.int64)
        self.pending = np.zeros(n, dtype=np.int64)
        self.count = np.full(n, -1, dtype=np.int64)
        self.absmax = np.zeros(n)
        self.last = np.full(n, -1, dtype=np.int64)

    NAMES = ("keys", "stats", "numbers", "size", "nans", "pending", "count", "absmax", "last")

    def grow(self, n: int) -> "SearchIndex":
        """A copy with ``n`` more (empty, to be built) streams."""
        more = SearchIndex(n, self.memory, self.features)
        out = SearchIndex(0, self.memory, self.features)
        for name in self.NAMES:
            setattr(out, name, np.concatenate([getattr(self, name), getattr(more, name)]))
        return out

    def arrays(self) -> tuple:
        return tuple(getattr(self, name) for name in self.NAMES)

    def nbytes(self) -> int:
        """Bytes of the index's arrays."""
        return sum(getattr(self, name).nbytes for name in self.NAMES)


@njit(cache=True, nogil=True, inline="always")
def _bounds(ranges, vector, stats):
    """The mean of ``vector`` and its largest |value| (returned); its ``G`` group means, then its ``G`` group
    standard deviations (``sqrt(sum((x - mean_j)^2) / g_j)`` over group ``j``), written to ``stats (2 G,)``."""
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
    return total / F, top


@njit(cache=True, nogil=True, inline="always")
def _slack(top, F):
    """What the key (float64) and the group means and deviations (stored as float32) may be off by, at most,
    for features of magnitude up to ``top``: (key, group) slacks, generous. (A group's deviation is at most
    ``2 top``; float32 rounds it by at most ``top * 2**-23``, float64 arithmetic by far less.)"""
    return top * (F + 4) * 2.0 ** -50, top * (2.0 ** -22 + (F + 8) * 2.0 ** -50)


@njit(cache=True, nogil=True)
def _insert(keys, stats, numbers, size, nans, pending, absmax, r, number, key, values, top, memory):
    """Append store ``number`` (key, group statistics ``values``) to stream ``r``'s unsorted entries (merging
    them first when full)."""
    if pending[r] == PENDING:
        _merge(keys, stats, numbers, size, nans, pending, r, number - memory + 1, memory)
    at = memory + pending[r]
    keys[r, at] = key
    for j in range(len(values)):
        stats[r, j, at] = np.float32(values[j])
    numbers[r, at] = number
    pending[r] += 1
    absmax[r] = max(absmax[r], top)


@njit(cache=True, nogil=True, inline="always")
def _move(keys, stats, numbers, r, src, out_keys, out_stats, out_numbers, n):
    out_keys[n] = keys[r, src]
    out_numbers[n] = numbers[r, src]
    out_stats[:, n] = stats[r, :, src]


@njit(cache=True, nogil=True)
def _merge(keys, stats, numbers, size, nans, pending, r, oldest, memory):
    """Sort stream ``r``'s unsorted entries into the sorted part, dropping the entries older than store
    number ``oldest`` (overwritten)."""
    S = stats.shape[1]
    sorted_n, n_pend = size[r] - nans[r], pending[r]
    fresh = np.empty(n_pend, dtype=np.int64)  # the pending positions with a key, then sorted by it
    n_fresh, n_nan = 0, 0
    for p in range(n_pend):
        if numbers[r, memory + p] >= oldest and keys[r, memory + p] == keys[r, memory + p]:
            fresh[n_fresh] = memory + p
            n_fresh += 1
    fresh = fresh[:n_fresh][np.argsort(keys[r, fresh[:n_fresh]])]
    total = size[r] + n_pend
    out_keys, out_numbers = np.empty(total), np.empty(total, np.int64)
    out_stats = np.empty((S, total), dtype=np.float32)
    a, b, n = 0, 0, 0
    while a < sorted_n or b < n_fresh:
        if b >= n_fresh or (a < sorted_n and keys[r, a] <= keys[r, fresh[b]]):
            src = a
            a += 1
        else:
            src = fresh[b]
            b += 1
        if numbers[r, src] < oldest:
            continue
        _move(keys, stats, numbers, r, src, out_keys, out_stats, out_numbers, n)
        n += 1
    for src in range(sorted_n, size[r]):  # the NaN keys, old then new
        if numbers[r, src] >= oldest:
            _move(keys, stats, numbers, r, src, out_keys, out_stats, out_numbers, n)
            n += 1
            n_nan += 1
    for p in range(n_pend):
        src = memory + p
        if numbers[r, src] >= oldest and keys[r, src] != keys[r, src]:
            _move(keys, stats, numbers, r, src, out_keys, out_stats, out_numbers, n)
            n += 1
            n_nan += 1
    keys[r, :n] = out_keys[:n]
    numbers[r, :n] = out_numbers[:n]
    stats[r, :, :n] = out_stats[:, :n]
    size[r], nans[r], pending[r] = n, n_nan, 0


@njit(cache=True, nogil=True)
def _rebuild(r, stored, bank, bank_rows, ranges, keys, stats, numbers, size, nans, pending, count, absmax, last):
    """Stream ``r``'s index from its bank: every filled slot with a row."""
    memory, F = bank.shape[1], bank.shape[2]
    st = stored[r]
    vector, values = np.empty(F), np.empty(stats.shape[1])
    size[r], nans[r], pending[r], absmax[r], last[r] = 0, 0, 0, 0.0, -1
    for slot in range(min(st, memory)):
        if bank_rows[r, slot] < 0:
            continue
        number = slot if st <= memory else st - memory + (slot - st) % memory
        for f in range(F):
            vector[f] = bank[r, slot, f]
        key, top = _bounds(ranges, vector, values)
        at = size[r]
        keys[r, at], numbers[r, at] = key, number
        for j in range(len(values)):
            stats[r, j, at] = np.float32(values[j])
        absmax[r] = max(absmax[r], top)
        size[r] += 1
    n = size[r]
    order = np.argsort(keys[r, :n])  # NaN last
    k2, i2 = keys[r, :n][order], numbers[r, :n][order]
    keys[r, :n] = k2
    numbers[r, :n] = i2
    for j in range(stats.shape[1]):
        g2 = stats[r, j, :n][order]
        stats[r, j, :n] = g2
    n_nan = 0
    for i in range(n):
        if k2[i] != k2[i]:
            n_nan += 1
    nans[r] = n_nan
    count[r] = st


@njit(cache=True, nogil=True)
def build_index(stored, bank, bank_rows, keys, stats, numbers, size, nans, pending, count, absmax, last):
    """Build the index of every stream whose ``count`` differs from ``stored`` (the search does this
    lazily, stream by stream)."""
    ranges, _ = group_ranges(bank.shape[2], stats.shape[1] // 2)
    for r in range(len(stored)):
        if count[r] != stored[r]:
            _rebuild(r, stored, bank, bank_rows, ranges, keys, stats, numbers, size, nans, pending, count,
                     absmax, last)


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
