"""Forecasts over several horizons: ``forecast_horizon=`` of :class:`~sparsernn.detectors.SelectiveUpdateDetector`.

With ``forecast_horizon = K`` the forecaster's head predicts, after point ``t``, a Gaussian for each
of the next ``K`` points ``u_{t+1} .. u_{t+K}``: its ``2 d K`` outputs are laid out as
``[mean_1 | ... | mean_K | log_var_1 | ... | log_var_K]``, each ``d`` wide (``d`` channels), so core's
read-out contract (a Gaussian of width ``m = d K``) and every inference kernel carry it unchanged.
Each horizon's mean block starts as a persistence forecast. Training scores every horizon on the
points it predicts (the mean of the horizons' Gaussian NLLs, :func:`horizon_nll`).

The score of point ``n`` (its index in the stream) is the mean over the horizons ``h`` whose forecast
exists (made at point ``n - h >= 0``) of the surprise of ``u_n`` under the forecast made ``h`` points
before it, horizon ``h``::

    score_n = mean_{h <= min(K, n)} 0.5 * mean_c (u_n,c - mu_{n|n-h},c)^2 / var_{n|n-h},c

(the first point, which no forecast precedes, uses horizon 1's initial forecast, as the one-step
score does; it is inside every stream's warmup anyway). With ``K = 1`` this is the one-step surprise.

Why: a one-step forecaster adapts to a lasting change (a level shift, a changed rhythm) within a
step or two, so its surprise sees only the change's first points. A forecast made ``h`` points
before still predicts the old behaviour for ``h`` points after the change, so the mean over
horizons stays high for up to ``K`` points, and the forecaster itself (not a residual statistic
after it) decides what the next ``K`` points should look like.

One implementation serves the batch detector (``decision_function``) and the
:class:`~sparsernn.detectors.StreamScorer`, which keeps each stream's last ``K`` forecasts
(``horizon_mean``, ``horizon_var``).
"""
from __future__ import annotations

import numpy as np
import torch

from .forecaster import gaussian_nll
from .surprise import surprise

MAX_HORIZON = 1000
"""Largest ``forecast_horizon`` (each stream keeps ``K`` forecasts of width ``d K``)."""


def check_horizon(horizon) -> int:
    """``forecast_horizon`` as an int in ``[1, MAX_HORIZON]``; ``ValueError`` naming it otherwise."""
    if isinstance(horizon, (bool, np.bool_)) or not isinstance(horizon, (int, np.integer)) \
            or not 1 <= horizon <= MAX_HORIZON:
        raise ValueError(f"forecast_horizon must be an int in [1, {MAX_HORIZON}] (points forecast after each "
                         f"point; 1: the next point only); got {horizon!r}")
    return int(horizon)


def horizon_block(h: int, d: int) -> slice:
    """The columns of horizon ``h`` (1-based) in a mean or variance of width ``d K``."""
    return slice((h - 1) * d, h * d)


def horizon_nll(u: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, burn_in: int, horizon: int) -> torch.Tensor:
    """Training loss: the mean over horizons of the Gaussian NLL (without its constant) of the forecasts
    made at rows ``burn_in ..`` of a window for the rows ``h`` later.

    ``u (T, B, d)``; ``mean``, ``var (T, B, d K)``: the forecasts made after each row. Horizons whose
    targets fall outside the window are left out (horizon 1 always has one: ``burn_in <= T - 2``).
    With ``horizon == 1`` this is exactly :func:`~sparsernn.detectors.forecaster.gaussian_nll` of the
    next row (as training has always scored).
    """
    T, d = u.shape[0], u.shape[-1]
    losses = []
    for h in range(1, horizon + 1):
        if burn_in + h >= T:
            break
        cols = horizon_block(h, d)
        losses.append(gaussian_nll(u[burn_in + h:], mean[burn_in:T - h, :, cols], var[burn_in:T - h, :, cols]))
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


def horizon_surprise(u: np.ndarray, mean: np.ndarray, var: np.ndarray, count: np.ndarray, horizon: int,
                     half: np.float32) -> np.ndarray:
    """The score of each point of a block under the forecasts made before it (see the module doc).

    Parameters
    ----------
    u : float32 array (T, B, d)
        The block's normalised points, B streams in time order.
    mean, var : float32 arrays (K + T - 1 or more, B, d K)
        Each stream's forecasts, oldest first: rows ``0 .. K - 1`` made at the ``K`` points before
        the block (the last at the point just before it), row ``K + i`` made at the block's point ``i``.
    count : int array (B,)
        Points each stream had learned before the block (its first point's index).
    horizon : int
        ``K``.
    half : np.float32
        ``0.5 / d``.

    Returns
    -------
    float64 array (T, B)

    A point's score depends only on its own forecasts (summed over horizons in a fixed order), so it
    is the same bit for bit whether its stream comes in one block or point by point.
    """
    T, B, d = u.shape
    index = count[None, :] + np.arange(T)[:, None]  # (T, B): each point's index in its stream
    total, used = np.zeros((T, B)), np.zeros((T, B))
    for h in range(1, horizon + 1):
        rows, cols = slice(horizon - h, horizon - h + T), horizon_block(h, d)
        made = (index >= h) | (h == 1)
        total += np.where(made, surprise(u, mean[rows, :, cols], var[rows, :, cols], half), 0.0)
        used += made
    return total / used
