"""Normalisation: robust fit-time scaling, and its online (exponentially weighted) update."""
from __future__ import annotations

import numpy as np

IQR_TO_STD = 1.349
"""Inter-quartile range of a standard normal distribution."""


def robust_center_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median and robust scale of ``values`` (n_timestamps, n_channels).

    The scale is ``IQR / 1.349`` (the standard deviation for normal data); for
    a channel whose IQR is 0 it falls back to the standard deviation, then to 1.
    Returns two arrays of shape (n_channels,).
    """
    center = np.median(values, axis=0)
    q75, q25 = np.percentile(values, [75, 25], axis=0)
    scale = (q75 - q25) / IQR_TO_STD
    std = values.std(axis=0)
    scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))
    return center, scale


def halflife_to_alpha(halflife: float) -> float:
    """Weight of the newest point in an exponential average with this half-life (in points)."""
    return 1.0 - 0.5 ** (1.0 / halflife)


def ew_mean_var(x: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: float):
    """Run an exponentially weighted mean / variance over ``x`` of shape (T, ...).

    Returns ``(means, variances)`` of shape (T, ...): row t holds the
    statistics *before* ``x[t]`` is added (so normalising ``x[t]`` with them is
    causal), plus the final ``(mean, var)`` after the last row.
    The update is ``d = x - m; m += alpha d; v = (1 - alpha) (v + alpha d^2)``.
    """
    means, variances = np.empty_like(x), np.empty_like(x)
    mean, var = mean.copy(), var.copy()
    for t in range(x.shape[0]):
        means[t], variances[t] = mean, var
        delta = x[t] - mean
        mean += alpha * delta
        var = (1.0 - alpha) * (var + alpha * delta * delta)
    return means, variances, mean, var
