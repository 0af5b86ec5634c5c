"""Window-level surprise: ``surprise_windows=`` of :class:`~sparsernn.detectors.SelectiveUpdateDetector`.

One implementation, used by the batch detector's ``decision_function`` and by the
:class:`~sparsernn.detectors.StreamScorer` (which keeps the per-stream state between blocks).

With the forecaster's standardised residuals ``z_t,c = (u_t,c - mu_t,c) / sigma_t,c`` (``mu``,
``sigma**2``: the forecast made at ``t - 1``), a window of ``w`` steps ending at ``t`` gives, per
channel, ``q_w,c(t) = (sum_{k < n} z_{t-k,c})**2 / n`` (``n = min(w, points scored so far)``), and
its statistic is::

    S_w(t) = 0.5 * mean_c q_w,c(t) / v_w,c(t)

``v_w,c(t)`` is the mean of the stream's ``q_w,c`` *before* ``t``, starting from the model's value
1 counted as one observation (a plain mean over the first :data:`WINDOW_MEMORY` values, then
exponentially weighted with weight ``1 / WINDOW_MEMORY``; floored at :data:`VAR_FLOOR`). If the
residuals are independent standard normal, as the model says, ``q`` is ``chi2_1`` with mean 1, so
``v`` stays near 1 and ``S_w`` has the one-step surprise's distribution (``0.5 * chi2_1`` for one
channel). Real residuals are autocorrelated (a forecaster that lags, or one close to persistence,
whose residuals are differences and cancel in a sum); ``v`` is then the stream's own variance
ratio of the window sum, and dividing by it puts ``S_w`` back on that scale. So
``max(surprise, S_w1, S_w2, ...)`` is, up to the calibration, the statistic whose upper-tail
``-log p`` is the largest of theirs (that tail is the same increasing function of each).

Why: a one-step forecaster adapts within a step or two, so its surprise sees only the first step of
a lasting change (a level shift, a changed rhythm); a run of residuals of one sign adds up in the
window sum, and a step change stays in it for ``w`` steps. Points of a stream's first ``warmup``
(scored 0) are left out of the windows and of ``v``, and such a point scores 0.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_WINDOW = 100_000
"""Largest window of ``surprise_windows`` (each stream keeps ``max(windows) - 1`` residuals per channel)."""

WINDOW_MEMORY = 1000
"""Window statistics averaged plainly into ``v`` (with the prior 1), then its exponential memory."""

VAR_FLOOR = 0.01
"""Floor of ``v``, the mean of a window's ``q`` (a stretch the model forecasts perfectly has ``q`` near 0)."""


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


def window_surprise(z: np.ndarray, ok: np.ndarray, ring: np.ndarray, ring_ok: np.ndarray, var: np.ndarray,
                    seen: np.ndarray, windows: tuple[int, ...]):
    """The largest calibrated window statistic ``max_w S_w`` (see the module doc) of each point of a block.

    Parameters
    ----------
    z : float64 array (T, B, d)
        Standardised residuals of the block's points (B streams, in time order).
    ok : bool array (T, B)
        Whether each point is scored (False in a stream's warmup: its ``z`` is left out).
    ring : float64 array (B, W, d), ``W = max(windows) - 1``
        Each stream's last ``W`` residuals before the block, oldest first (0 where not ``ring_ok``).
    ring_ok : bool array (B, W)
    var : float64 array (B, K, d)
        ``v`` of each window (``K = len(windows)``) and channel (1.0 for a fresh stream).
    seen : int64 array (B,)
        Scored points each stream's ``v`` has averaged.
    windows : tuple of int
        Checked by :func:`check_windows`.

    Returns
    -------
    stats : float64 (T, B), 0 where not ``ok``; the new ``ring``, ``ring_ok``, ``var`` and ``seen``.

    Each window sum adds its residuals oldest first, one array addition per lag, and ``v`` advances
    one point at a time, so a point's statistic is the same bit for bit whether the stream comes in
    one block or point by point, alone or batched with other streams.
    """
    T, B, d = z.shape
    W = ring.shape[1]
    z = np.where(ok[..., None], z, 0.0)
    seq = np.concatenate([ring.transpose(1, 0, 2), z])  # (W + T, B, d), oldest first
    seq_ok = np.concatenate([ring_ok.T, ok]).astype(np.int64)  # (W + T, B)
    q = np.empty((T, B, len(windows), d))
    for i, w in enumerate(windows):
        total, count = np.zeros((T, B, d)), np.zeros((T, B), dtype=np.int64)
        for k in range(w - 1, -1, -1):  # lag k: rows W - k .. W - k + T - 1 of seq, oldest first
            total += seq[W - k: W - k + T]
            count += seq_ok[W - k: W - k + T]
        q[:, :, i] = total * total / np.maximum(count, 1)[..., None]
    var, seen = var.copy(), seen.copy()
    stats = np.zeros((T, B))
    half = 0.5 / d
    for t in range(T):  # v is sequential: the point at t is judged with v from the points before it
        ratio = q[t] / np.maximum(var, VAR_FLOOR)  # (B, K, d)
        square = ratio[..., 0]
        for c in range(1, d):  # channel by channel: the same order whatever the block's shape
            square = square + ratio[..., c]
        stats[t] = np.where(ok[t], (half * square).max(-1), 0.0)
        weight = (1.0 / np.minimum(seen + 2, WINDOW_MEMORY))[:, None, None]
        var = np.where(ok[t][:, None, None], (1.0 - weight) * var + weight * q[t], var)
        seen = seen + ok[t]
    new_ring = np.ascontiguousarray(seq[T:].transpose(1, 0, 2))
    new_ok = np.ascontiguousarray(seq_ok[T:].T.astype(bool))
    return stats, new_ring, new_ok, var, seen
