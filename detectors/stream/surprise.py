"""The surprise of a normalised point under a stream's Gaussian forecast: one rule for every path.

:func:`surprise` is the one-step surprise. :func:`window_surprise` is the optional *window-level*
surprise (``surprise_windows=`` of :class:`~sparsernn.detectors.SelectiveUpdateDetector`), shared
by the batch detector's ``decision_function`` and the :class:`~sparsernn.detectors.StreamScorer`.

Window-level surprise
---------------------
With the forecaster's standardised residuals ``z_t,c = (u_t,c - mu_t,c) / sigma_t,c`` (``mu``,
``sigma**2``: the forecast made at ``t - 1``), the statistic of a window of ``w`` steps ending at
``t`` is::

    S_w(t) = 0.5 * mean_c (sum_{k < n} z_{t-k,c})**2 / n,    n = min(w, points scored so far)

Under the model (``z`` independent standard normal) ``sum z / sqrt(n)`` is standard normal, so
``S_w`` has the one-step surprise's distribution (``0.5 * chi2_1`` for one channel): the two are on
one scale, and ``max(surprise, S_w1, S_w2, ...)`` is the statistic whose upper-tail ``-log p`` is the
largest of theirs (that tail is the same increasing function of each). A one-step forecaster that
adapts within a step or two sees only the first step of a lasting change; a run of residuals of one
sign (a level the model keeps under- or over-forecasting, a changed rhythm) adds up in ``sum z``
while the one-step surprises stay small. Points of a stream's first ``warmup`` (scored 0) are left
out of the windows (``n`` counts the others), and such a point scores 0 whatever its window holds.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_WINDOW = 100_000
"""Largest window of ``surprise_windows`` (each stream keeps ``max(windows) - 1`` residuals per channel)."""


def surprise(u, mean, var, half):
    """``half * sum_c (u_c - mean_c)^2 / var_c``: the negative log-likelihood of ``u`` less its constant.

    Parameters
    ----------
    u, mean, var : float32 arrays of shape (..., n_channels), or float32 scalars (one channel)
        The normalised point(s), the forecast mean and variance.
    half : np.float32
        ``0.5 / n_channels`` (the mean over channels, halved).

    Returns
    -------
    float32 array of shape (...), or a float32 scalar
    """
    diff = u - mean
    ratio = diff * diff / var
    return (ratio if type(ratio) is np.float32 else ratio.sum(-1)) * half


def check_windows(windows) -> tuple[int, ...] | None:
    """``surprise_windows`` as a sorted tuple of distinct ints in ``[2, MAX_WINDOW]``, or None (off).

    Raises ``ValueError`` naming ``surprise_windows`` for anything else (an empty sequence, a
    string, a bool, a float, 1 or less, a repeat).
    """
    if windows is None:
        return None
    allowed = (f"surprise_windows must be None or a non-empty sequence of distinct ints in [2, {MAX_WINDOW}] "
               f"(window lengths in steps; the one-step surprise is always included)")
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Iterable):
        raise ValueError(f"{allowed}; got {windows!r}")
    values = list(windows)
    if not values or any(isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer))
                         or not 2 <= w <= MAX_WINDOW for w in values) or len(set(map(int, values))) != len(values):
        raise ValueError(f"{allowed}; got {windows!r}")
    return tuple(sorted(int(w) for w in values))


def standardized_residuals(u: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``(u - mean) / sqrt(var)`` in float64, elementwise (arrays of shape (..., n_channels))."""
    return (np.asarray(u, dtype=np.float64) - mean) / np.sqrt(np.asarray(var, dtype=np.float64))


def window_surprise(z: np.ndarray, ok: np.ndarray, ring: np.ndarray, ring_ok: np.ndarray,
                    windows: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest window statistic ``max_w S_w`` (see the module doc) of each point of a block.

    Parameters
    ----------
    z : float64 array (T, B, d)
        Standardised residuals of the block's points (B streams, in time order).
    ok : bool array (T, B)
        Whether each point is scored (False in a stream's warmup: its ``z`` is left out).
    ring : float64 array (B, W, d), ``W = max(windows) - 1``
        Each stream's last ``W`` residuals before the block, oldest first (0 where not ``ring_ok``).
    ring_ok : bool array (B, W)
    windows : tuple of int
        Checked by :func:`check_windows`.

    Returns
    -------
    stats : float64 (T, B), 0 where not ``ok``; the new ``ring`` (B, W, d) and ``ring_ok`` (B, W).

    Each window sum adds its residuals oldest first, one array addition per lag, so a point's
    statistic is the same bit for bit whether the stream comes in one block or point by point,
    alone or batched with other streams.
    """
    T, B, d = z.shape
    W = ring.shape[1]
    z = np.where(ok[..., None], z, 0.0)
    seq = np.concatenate([ring.transpose(1, 0, 2), z])  # (W + T, B, d), oldest first
    seq_ok = np.concatenate([ring_ok.T, ok]).astype(np.int64)  # (W + T, B)
    best = np.zeros((T, B))
    for w in windows:
        total, count = np.zeros((T, B, d)), np.zeros((T, B), dtype=np.int64)
        for k in range(w - 1, -1, -1):  # lag k: rows W - k .. W - k + T - 1 of seq, oldest first
            total += seq[W - k: W - k + T]
            count += seq_ok[W - k: W - k + T]
        square = total[..., 0] * total[..., 0]
        for c in range(1, d):  # channel by channel: the same order whatever the block's shape
            square = square + total[..., c] * total[..., c]
        stat = 0.5 / d * square / np.maximum(count, 1)
        best = np.maximum(best, stat)
    best[~ok] = 0.0
    new_ring = np.ascontiguousarray(seq[T:].transpose(1, 0, 2))
    new_ok = np.ascontiguousarray(seq_ok[T:].T.astype(bool))
    return best, new_ring, new_ok
