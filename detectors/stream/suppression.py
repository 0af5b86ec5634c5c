"""``PeakSuppression``: one report per burst of high scores, for any threshold.

A wrapper in the river sense around a stream of scores (typically an
:class:`~sparsernn.detectors.AnomalyLikelihood`): same protocol, one added
behaviour. Per stream, a score is passed on only where it exceeds every score
(before suppression) of the previous ``period`` points of that stream;
elsewhere it becomes 0.0.

Why: a detector that crosses a threshold keeps crossing it while an anomaly
lasts, and every later crossing is a false alarm or, at best, worth nothing
(NAB counts only the first detection in a window and penalises every
detection outside). Suppressing re-alarms for a while after an alarm is what
NAB's ARTime and CAD-OSE do, but they need the threshold. The rule here needs
none: for every threshold ``c``, the first crossing of ``c`` after ``period``
points below it is kept (it exceeds all of them); within ``period`` points of
a crossing, a score is kept only if it is higher than everything since, i.e.
the anomaly got stronger.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .wrappers import ScoreTransform


class PeakSuppression(ScoreTransform):
    """Keep a stream's score only where it beats the last ``period`` scores.

    Parameters
    ----------
    stream : AnomalyLikelihood or StreamScorer
        The wrapped scorer (``score_one``, ``learn_one``, ``score_many``,
        ``process``, ``stream_ids``); its scores should be >= 0.
    period : int
        Suppression period in points (>= 1). :class:`SelectiveUpdateNAB` uses
        the probationary length of the file.

    Examples
    --------
    >>> stream = PeakSuppression(AnomalyLikelihood(StreamScorer(detector)), period=500)  # doctest: +SKIP
    >>> scores = stream.process(block)                                                   # doctest: +SKIP
    """

    STATE = ("recent",)

    def __init__(self, stream, period: int) -> None:
        self.stream = stream
        self.period = check_int("period", period, 1)
        self.recent = np.zeros((0, self.period))  # the last `period` raw scores of each stream, oldest first

    def settings(self) -> dict:
        return {"period": self.period}

    def _grow(self, n: int) -> None:
        self.recent = np.concatenate([self.recent, np.zeros((n, self.period))])

    def _transform(self, raw: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Suppressed scores (T, B) of raw scores (T, B) of streams ``rows``."""
        history = np.concatenate([self.recent[rows].T, raw])  # (period + T, B)
        previous = np.lib.stride_tricks.sliding_window_view(history[:-1], self.period, axis=0).max(-1)
        if learn:
            self.recent[rows] = history[-self.period:].T
        return np.where(raw > previous, raw, 0.0)
