"""Normalisation: robust fit-time scaling, and its online (exponentially weighted) update."""
from __future__ import annotations

import math

import numpy as np

IQR_TO_STD = 1.349
"""Inter-quartile range of a standard normal distribution."""

INPUT_CLIP = 100.0
"""Bound of what a model absorbs, in robust units: a normalised input ``u`` is clipped to
``[-INPUT_CLIP, INPUT_CLIP]`` before the recurrent step, the surprise and the window
novelty see it, and the online normaliser's step ``x - mean`` is clipped to
``INPUT_CLIP`` of its current scale. A finite outlier of any size (1e39, -1e308) thus
scores at least ``0.5 * (INPUT_CLIP - |mean|)**2 / var`` (very high) and leaves every
state finite; data within 100 robust standard deviations is unchanged by it."""

VAR_LIMIT = 1e300
"""Cap of the online normaliser's variance (its square root, times INPUT_CLIP, squared stays finite)."""


def clip_units(u: np.ndarray) -> np.ndarray:
    """``u`` (normalised, any shape) clipped to ``[-INPUT_CLIP, INPUT_CLIP]`` (inf included, in place)."""
    return np.clip(u, -INPUT_CLIP, INPUT_CLIP, out=u)


def standardize(values, center, scale):
    """``(values - center) / scale`` clipped to ``[-INPUT_CLIP, INPUT_CLIP]``.

    ``values`` is an array (any shape; ``center`` and ``scale`` broadcast) or a
    plain float (with float ``center`` / ``scale``: the one-channel, one-point
    path, the same float64 operations without NumPy's per-call cost).
    """
    if type(values) is float:
        u = (values - center) / scale
        return -INPUT_CLIP if u < -INPUT_CLIP else (INPUT_CLIP if u > INPUT_CLIP else u)
    with np.errstate(over="ignore"):  # (values - centre) may overflow to inf: clipped here
        return clip_units((values - center) / scale)


def online_scale(var, floor):
    """The online normaliser's scale: ``sqrt(var)`` floored at ``floor`` (arrays, or floats)."""
    if type(var) is float:
        return max(math.sqrt(var), floor)
    return np.maximum(np.sqrt(var), floor)


def robust_center_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median and robust scale of ``values`` (n_timestamps, n_channels).

    The scale is ``IQR / 1.349`` (the standard deviation for normal data); for
    a channel whose IQR is 0 it falls back to the standard deviation, then to 1.
    Returns two arrays of shape (n_channels,).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # values near +-1.8e308: see the fallbacks
        center = np.median(values, axis=0)
        q75, q25 = np.percentile(values, [75, 25], axis=0)
        scale = (q75 - q25) / IQR_TO_STD
        if not np.isfinite(scale).all():  # the IQR overflowed: the same, divided first
            scale = q75 / IQR_TO_STD - q25 / IQR_TO_STD
        std = values.std(axis=0)
        if not np.isfinite(std).all():  # the std overflowed: computed on values scaled into range
            big = np.max(np.abs(values), axis=0)
            std = np.where(np.isfinite(std), std, (values / big).std(axis=0) * big)
        center = np.where(np.isfinite(center), center, np.median(values / 2, axis=0) * 2)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, np.where(np.isfinite(std) & (std > 0), std, 1.0))
    return center, scale


def halflife_to_alpha(halflife: float) -> float:
    """Weight of the newest point in an exponential average with this half-life (in points)."""
    return 1.0 - 0.5 ** (1.0 / halflife)


def ew_mean_var(x: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: float, floor=0.0):
    """Run an exponentially weighted mean / variance over ``x`` of shape (T, ...).

    Returns ``(means, variances)`` of shape (T, ...): row t holds the
    statistics *before* ``x[t]`` is added (so normalising ``x[t]`` with them is
    causal), plus the final ``(mean, var)`` after the last row.
    The update is ``d = x - m; m += alpha d; v = (1 - alpha) (v + alpha d^2)``, with
    ``d`` clipped to ``INPUT_CLIP * max(sqrt(v), floor)`` and ``v`` capped at ``VAR_LIMIT``
    (:func:`ew_step`), so that any finite ``x`` leaves them finite.
    """
    means, variances = np.empty_like(x), np.empty_like(x)
    mean, var = mean.copy(), var.copy()
    for t in range(x.shape[0]):
        means[t], variances[t] = mean, var
        mean, var = ew_step(x[t], mean, var, alpha, floor)
    return means, variances, mean, var


def ew_step(x, mean, var, alpha: float, floor=0.0):
    """One step of :func:`ew_mean_var`: the new ``(mean, var)``.

    Arrays (any shape, broadcast), or plain floats ``x``, ``mean``, ``var``
    (the one-channel, one-point path: the same operations on Python floats).
    """
    scalar = type(x) is float
    bound, delta = INPUT_CLIP * online_scale(var, floor), x - mean
    if scalar:
        delta = -bound if delta < -bound else (bound if delta > bound else delta)
    else:
        delta = np.clip(delta, -bound, bound)
    var = (1.0 - alpha) * (var + alpha * delta * delta)
    return mean + alpha * delta, (min(var, VAR_LIMIT) if scalar else np.minimum(var, VAR_LIMIT))
