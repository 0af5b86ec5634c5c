"""``SpatialAnomaly``: score 1.0 where a value leaves the range seen so far.

A wrapper in the river sense around a stream of scores (typically an
:class:`~sparsernn.detectors.AnomalyLikelihood`): same protocol, one added
behaviour. It is the *spatial anomaly* rule of NAB's own HTM detector
(``nab/detectors/numenta/numenta_detector.py``, numenta/NAB v1.1): per stream,
keep the minimum and maximum of every value seen so far; a value more than
``tolerance * (max - min)`` above the maximum or below the minimum gets the
score 1.0, whatever the wrapped scorer said. The range is then widened to
include the value. Nothing fires before two distinct values have been seen.

Why: a forecaster that adapts to a level shift only sees a short burst of
surprise, and a slow drift to unseen values none at all, yet values never seen
before are what a person labelling the series marks ("the human labelling
bias for spatial values larger than what has been seen so far", NAB's
comment). ``tolerance`` defaults to NAB's ``SPATIAL_TOLERANCE = 0.05``.
With several channels, the rule fires where any channel leaves its range.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_number
from .wrappers import ValueTransform

SPATIAL_TOLERANCE = 0.05
"""NAB's published tolerance: the fraction of the seen range a value may exceed it by."""


class SpatialAnomaly(ValueTransform):
    """Score 1.0 where a value leaves the range seen so far by more than ``tolerance`` of it.

    Parameters
    ----------
    stream : AnomalyLikelihood, PeakSuppression or StreamScorer
        The wrapped scorer (``score_one``, ``learn_one``, ``score_many``,
        ``process``, ``stream_ids``); its scores should be in [0, 1]. The
        values checked are the raw points given to this wrapper.
    tolerance : float, default 0.05
        NAB's ``SPATIAL_TOLERANCE``.

    Attributes
    ----------
    low, high : arrays of shape (n_streams, n_channels)
        The smallest and largest value seen per stream and channel (NaN before the first).

    Examples
    --------
    >>> stream = SpatialAnomaly(AnomalyLikelihood(StreamScorer(detector)))  # doctest: +SKIP
    >>> scores = stream.process(block)                                     # doctest: +SKIP
    """

    STATE = ("low", "high")

    def __init__(self, stream, tolerance: float = SPATIAL_TOLERANCE) -> None:
        self.stream = stream
        self.tolerance = check_number("tolerance", tolerance, 0.0)
        n_channels = self._scorer.n_channels
        self.low = np.zeros((0, n_channels))
        self.high = np.zeros((0, n_channels))

    def settings(self) -> dict:
        return {"tolerance": self.tolerance}

    def _grow(self, n: int) -> None:
        fresh = np.full((n, self.low.shape[1]), np.nan)
        self.low, self.high = np.concatenate([self.low, fresh]), np.concatenate([self.high, fresh])

    def _flag(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Boolean (T, B): where ``values`` (T, B, C) leave the range seen before them."""
        low, high = self.low[rows], self.high[rows]  # (B, C) copies
        flags = np.zeros(values.shape[:2], dtype=bool)
        for t, value in enumerate(values):
            margin = self.tolerance * (high - low)
            outside = (high != low) & ((value > high + margin) | (value < low - margin))  # NaN: False
            flags[t] = outside.any(-1)
            low, high = np.fmin(low, value), np.fmax(high, value)
        if learn:
            self.low[rows], self.high[rows] = low, high
        return flags

    def _combine(self, scores: np.ndarray, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """The wrapped scores (T, B), 1.0 where ``values`` (T, B, C) leave the range (:meth:`_flag`)."""
        return np.where(self._flag(values, rows, learn), 1.0, scores)
