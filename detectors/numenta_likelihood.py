"""``NumentaLikelihood``: the anomaly likelihood exactly as NAB's HTM detector runs it.

A wrapper in the river sense (the protocol of :class:`AnomalyLikelihood`:
``score_one``, ``learn_one``, ``score_many``, ``learn_many``, ``process``,
``classify``) around a :class:`StreamScorer`. It re-implements, from its
description, the estimator that NAB's ``numenta`` detector uses
(``nab/detectors/numenta/numenta_detector.py`` with nupic's
``anomaly_likelihood.AnomalyLikelihood``), per stream:

1. ``a_t`` — the mean of the last ``averaging_window`` (10) surprises;
2. nothing is judged during a probation of ``learning_period +
   estimation_samples`` points (NAB: half the probationary period each); the
   score there is the log-score of probability 0.5;
3. then, at the first point and every ``reestimation_period`` (100) points,
   the Gaussian ``(m, s)`` of ``a`` is re-estimated from the stream's last
   ``historic_window`` (8640) averages, leaving out its first
   ``learning_period`` points (while the model settles), with nupic's floors
   ``m >= 0.03`` and ``s**2 >= 0.0003``;
4. ``q_t = P(Z > (a_t - m) / s)``; where ``q_t`` and ``q_{t-1}`` are both in
   the red zone (``<= 1e-5``), ``q_t`` is reported as ``1e-3`` (nupic's
   ``_filterLikelihoods``: only the entry into the red zone is a red alarm);
5. the score is NAB's ``computeLogLikelihood``: ``log(q + 1e-10) / log(1e-10)``
   in [0, 1]; 0.5 is ``q = 1e-5``.

Differences from nupic, on purpose: the tail is one-sided (nupic also calls a
surprise far *below* the mean unlikely, which for a forecast error means
"unusually predictable"); the averages are the online ones (nupic recomputes
them inside the window at each re-estimation, so the window's first nine
differ); nupic's special case for a flat metric (a null distribution when the
values' variance is below 1.5e-5) is left out. Why this estimator rather than
:class:`AnomalyLikelihood`'s: its statistics come from the streamed, out-of-sample
surprises rather than from the training fit, and the red-zone filter reports
a sustained anomaly once (see docs/detectors.md for the NAB scores).
"""
from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np

LOG_EPSILON = math.log(1e-10)
"""``log(1 - 0.9999999999)``: NAB's log-score is 1.0 at a tail probability of 1e-10."""

RED_ZONE, YELLOW_ZONE = 1e-5, 1e-3
"""nupic's ``redThreshold`` and ``yellowThreshold`` as tail probabilities."""


def log_score(q: float) -> float:
    """NAB's ``computeLogLikelihood`` of the likelihood ``1 - q``: ``log(q + 1e-10) / log(1e-10)``."""
    return min(1.0, max(0.0, math.log(q + 1e-10) / LOG_EPSILON))


def tail_probability(x: float, mean: float, std: float) -> float:
    """One-sided Gaussian tail ``P(X > x)`` for ``X ~ N(mean, std**2)``."""
    return 0.5 * math.erfc((x - mean) / (std * math.sqrt(2.0)))


class NumentaLikelihood:
    """NAB's HTM anomaly likelihood around a :class:`StreamScorer` (see the module doc).

    Parameters
    ----------
    scorer : StreamScorer
    learning_period : int
        Leading points of each stream never used for the estimate (NAB: half its probationary period).
    estimation_samples : int, default 100
        Points after ``learning_period`` before the first estimate (NAB: the other half).
    averaging_window : int, default 10
    historic_window : int, default 8640
    reestimation_period : int, default 100
    alarm_threshold : float in (0, 1], default 0.5
        Scores at or above it are alarms (0.5: a tail probability of 1e-5).
    """

    def __init__(self, scorer, learning_period: int = 288, estimation_samples: int = 100,
                 averaging_window: int = 10, historic_window: int = 8640, reestimation_period: int = 100,
                 alarm_threshold: float = 0.5) -> None:
        for name, value, least in (("learning_period", learning_period, 0), ("estimation_samples", estimation_samples, 1),
                                   ("averaging_window", averaging_window, 1), ("historic_window", historic_window, 1),
                                   ("reestimation_period", reestimation_period, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
        if historic_window < estimation_samples:
            raise ValueError("historic_window must be >= estimation_samples")
        if not (isinstance(alarm_threshold, (int, float)) and 0 < alarm_threshold <= 1):
            raise ValueError(f"alarm_threshold must be in (0, 1]; got {alarm_threshold!r}")
        self.scorer = scorer
        self.learning_period, self.estimation_samples = int(learning_period), int(estimation_samples)
        self.averaging_window, self.historic_window = int(averaging_window), int(historic_window)
        self.reestimation_period, self.alarm_threshold = int(reestimation_period), float(alarm_threshold)
        self.recent = np.zeros((0, self.averaging_window))  # last raw surprises, ring indexed by seen
        self.history = np.zeros((0, self.historic_window))  # last averages, ring indexed by seen
        self.seen = np.zeros(0, dtype=np.int64)
        self.mean = np.zeros(0)  # the current Gaussian; NaN before the first estimate
        self.std = np.zeros(0)
        self.last_q = np.zeros(0)  # the previous point's unfiltered tail probability

    @property
    def probation(self) -> int:
        """Points of each stream scored as probability 0.5, before the first estimate."""
        return self.learning_period + self.estimation_samples

    @property
    def stream_ids(self) -> list:
        return self.scorer.stream_ids

    def _sync(self) -> None:
        """Give streams the scorer allocated since the last call an empty state."""
        n = len(self.scorer.stream_ids) - len(self.seen)
        if n > 0:
            self.recent = np.concatenate([self.recent, np.zeros((n, self.averaging_window))])
            self.history = np.concatenate([self.history, np.zeros((n, self.historic_window))])
            self.seen = np.concatenate([self.seen, np.zeros(n, dtype=np.int64)])
            self.mean = np.concatenate([self.mean, np.full(n, np.nan)])
            self.std = np.concatenate([self.std, np.full(n, np.nan)])
            self.last_q = np.concatenate([self.last_q, np.ones(n)])

    def _estimate(self, row: int, seen: int) -> tuple[float, float]:
        """The Gaussian of stream ``row``'s averages ``[max(learning_period, seen - historic_window), seen)``."""
        first = max(self.learning_period, seen - self.historic_window)
        values = self.history[row, np.arange(first, seen) % self.historic_window]
        return max(float(values.mean()), 0.03), math.sqrt(max(float(values.var()), 0.0003))

    def _point(self, surprise: float, row: int, learn: bool) -> float:
        """Score of one surprise of stream ``row``; with ``learn``, the stream's state advances."""
        seen, k = int(self.seen[row]), self.averaging_window
        window = self.recent[row, np.arange(max(0, seen - k + 1), seen) % k]
        average = (float(window.sum()) + surprise) / (len(window) + 1)
        mean, std, last_q = float(self.mean[row]), float(self.std[row]), float(self.last_q[row])
        if seen < self.probation:
            q = reported = 0.5
        else:
            if math.isnan(mean) or seen % self.reestimation_period == 0:
                mean, std = self._estimate(row, seen)
                # nupic re-scores the previous point under the new estimate
                last_q = tail_probability(float(self.history[row, (seen - 1) % self.historic_window]), mean, std)
            q = tail_probability(average, mean, std)
            reported = YELLOW_ZONE if q <= RED_ZONE and last_q <= RED_ZONE else q
        if learn:
            self.recent[row, seen % k] = surprise
            self.history[row, seen % self.historic_window] = average
            self.seen[row] = seen + 1
            self.mean[row], self.std[row], self.last_q[row] = mean, std, q
        return log_score(reported)

    # ------------------------------------------------------------ protocol
    def classify(self, score: float) -> bool:
        """Whether ``score`` is an alarm (``score >= alarm_threshold``)."""
        return score >= self.alarm_threshold

    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Score in [0, 1] of point ``x`` for ``stream``; changes no state."""
        values, row, _ = self.scorer._one(x, timestamp, stream)
        self._sync()
        surprise = self.scorer._point_surprise(self.scorer._point_normalized(values, row), row)
        return self._point(float(surprise), row, learn=False)

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by ``x``: the scorer, then the likelihood state."""
        values, row, time = self.scorer._one(x, timestamp, stream)
        self._sync()
        self._point(float(self.scorer._learn_point(values, row, time)), row, learn=True)

    def score_many(self, X, streams=None) -> np.ndarray:
        """Scores (n_streams,) of one point per stream; changes no state."""
        surprises = self.scorer.score_many(X, streams)
        rows = self.scorer._rows(self.scorer._streams(streams, len(surprises)))
        self._sync()
        return np.array([self._point(float(s), int(r), learn=False) for s, r in zip(surprises, rows)])

    def learn_many(self, X, streams=None, timestamps=None) -> None:
        """Advance each stream by its point in ``X`` (n_streams, n_channels): one batched step."""
        self.process(np.asarray(X)[None], streams, None if timestamps is None else [timestamps])

    def process(self, X, streams=None, timestamps=None) -> np.ndarray:
        """Score, then learn, a block (T, n_streams[, n_channels]); returns scores (T, n_streams)."""
        surprises = self.scorer.process(X, streams, timestamps)
        rows = self.scorer._rows(self.scorer._streams(streams, surprises.shape[1]))
        self._sync()
        scores = np.empty(surprises.shape)
        for t, step in enumerate(surprises):
            for b, (s, r) in enumerate(zip(step, rows)):
                scores[t, b] = self._point(float(s), int(r), learn=True)
        return scores
