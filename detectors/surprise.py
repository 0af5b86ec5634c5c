"""The surprise of a normalised point under a Gaussian forecast, in NumPy: one rule for every path (the stream
scorer's block and one-point paths, online learning, and multi-horizon scores)."""
from __future__ import annotations

import numpy as np


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
