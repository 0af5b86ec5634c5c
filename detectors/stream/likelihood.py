"""``AnomalyLikelihood``: surprises -> calibrated scores in [0, 1] and alarms, as NAB's HTM detector does it.

The one implementation of the anomaly likelihood in this package, used by the
stream wrapper :class:`AnomalyLikelihood` (river protocol, many streams,
pandas chunks, save / load) and by :func:`likelihood_scores` (one whole series,
which calibrates the baselines' raw scores). It re-implements, from its
description, the estimator of NAB's ``numenta`` detector
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
values' variance is below 1.5e-5) is left out. The statistics come from the
streamed, out-of-sample surprises, and the red-zone filter reports a sustained
anomaly once (see docs/detectors.md for the NAB scores).
"""
from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
from scipy import special

from ..checks import check_int, check_number
from .wrappers import ScoreTransform

LOG_EPSILON = math.log(1e-10)
"""``log(1 - 0.9999999999)``: NAB's log-score is 1.0 at a tail probability of 1e-10."""

RED_ZONE, YELLOW_ZONE = 1e-5, 1e-3
"""nupic's ``redThreshold`` and ``yellowThreshold`` as tail probabilities."""

MEAN_FLOOR, VAR_FLOOR = 0.03, 0.0003
"""nupic's floors of the estimated mean and variance of the averaged surprises."""


def log_score(q: float) -> float:
    """NAB's ``computeLogLikelihood`` of the likelihood ``1 - q``: ``log(q + 1e-10) / log(1e-10)``."""
    return min(1.0, max(0.0, math.log(q + 1e-10) / LOG_EPSILON))


def tail_probability(x: float, mean: float, std: float) -> float:
    """One-sided Gaussian tail ``P(X > x)`` for ``X ~ N(mean, std**2)``."""
    return 0.5 * math.erfc((x - mean) / (std * math.sqrt(2.0)))


def tail_probabilities(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """:func:`tail_probability` elementwise (NaN where ``mean`` is NaN)."""
    with np.errstate(invalid="ignore"):
        return 0.5 * special.erfc((x - mean) / (std * math.sqrt(2.0)))


def log_scores(q: np.ndarray) -> np.ndarray:
    """:func:`log_score` elementwise."""
    return np.clip(np.log(q + 1e-10) / LOG_EPSILON, 0.0, 1.0)


class LikelihoodEstimator:
    """NAB's anomaly likelihood for any number of independent streams (rows); see the module doc.

    Parameters
    ----------
    learning_period : int, default 288
        Leading points of each stream never used for the estimate (NAB: half its probationary period).
    estimation_samples : int, default 100
        Points after ``learning_period`` before the first estimate (NAB: the other half).
    averaging_window, historic_window, reestimation_period : int, default 10, 8640, 100

    Attributes (first axis: the stream row)
    ---------------------------------------
    recent : (n_streams, averaging_window) the last raw surprises, a ring indexed by ``seen``
    history : (n_streams, historic_window) the last averages, a ring indexed by ``seen``
    seen : (n_streams,) int64, points learned
    mean, std : (n_streams,) the current Gaussian (NaN before the first estimate)
    last_q : (n_streams,) the previous point's unfiltered tail probability
    """

    STATE = ("recent", "history", "seen", "mean", "std", "last_q")

    def __init__(self, learning_period: int = 288, estimation_samples: int = 100, averaging_window: int = 10,
                 historic_window: int = 8640, reestimation_period: int = 100) -> None:
        self.learning_period = check_int("learning_period", learning_period, 0)
        self.estimation_samples = check_int("estimation_samples", estimation_samples, 1)
        self.averaging_window = check_int("averaging_window", averaging_window, 1)
        self.historic_window = check_int("historic_window", historic_window, 1)
        self.reestimation_period = check_int("reestimation_period", reestimation_period, 1)
        if self.historic_window < self.estimation_samples:
            raise ValueError(f"historic_window ({historic_window}) must be >= estimation_samples "
                             f"({estimation_samples})")
        self.recent = np.zeros((0, self.averaging_window))
        self.history = np.zeros((0, self.historic_window))
        self.seen = np.zeros(0, dtype=np.int64)
        self.mean = np.zeros(0)
        self.std = np.zeros(0)
        self.last_q = np.zeros(0)

    @property
    def probation(self) -> int:
        """Points of each stream scored as probability 0.5, before the first estimate."""
        return self.learning_period + self.estimation_samples

    def _estimator_settings(self) -> dict:
        return dict(learning_period=self.learning_period, estimation_samples=self.estimation_samples,
                    averaging_window=self.averaging_window, historic_window=self.historic_window,
                    reestimation_period=self.reestimation_period)

    def _grow(self, n: int) -> None:
        """Append an empty state for ``n`` new streams."""
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
        return max(float(values.mean()), MEAN_FLOOR), math.sqrt(max(float(values.var()), VAR_FLOOR))

    def _point(self, surprise: float, row: int, learn: bool) -> float:
        """Score in [0, 1] of one surprise of stream ``row``; with ``learn``, the stream's state advances."""
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

    def _block(self, surprises: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Scores (T, B) of surprises (T, B) of distinct streams ``rows`` (B,), in time order.

        The same steps as :meth:`_point`, for all B streams at once per time step
        (numpy over the streams; the time loop stays, the state is sequential).
        :meth:`_point` is the plain one-point version (and the fast path for one
        point of one stream); tests hold the two equal.
        """
        rows = np.asarray(rows, dtype=np.int64)
        k, window = self.averaging_window, self.historic_window
        seen = self.seen[rows].copy()
        mean, std, last_q = self.mean[rows].copy(), self.std[rows].copy(), self.last_q[rows].copy()
        lags = np.arange(1, k)
        scores = np.empty(surprises.shape)
        for t, surprise in enumerate(surprises):
            # 1. the average of this surprise and the stream's previous (up to k - 1) ones
            valid = lags[None, :] <= seen[:, None]
            previous = self.recent[rows[:, None], (seen[:, None] - lags[None, :]) % k]
            average = (np.where(valid, previous, 0.0).sum(1) + surprise) / (valid.sum(1) + 1)
            # 2-3. (re-)estimate the Gaussian where due
            judged = seen >= self.probation
            due = np.flatnonzero(judged & (np.isnan(mean) | (seen % self.reestimation_period == 0)))
            if len(due):
                mean[due], std[due] = self._estimates(rows[due], seen[due])
                # nupic re-scores the previous point under the new estimate
                previous_average = self.history[rows[due], (seen[due] - 1) % window]
                last_q[due] = tail_probabilities(previous_average, mean[due], std[due])
            # 4-5. tail probability, red-zone filter, log-score
            q = np.where(judged, tail_probabilities(average, mean, std), 0.5)
            reported = np.where(judged & (q <= RED_ZONE) & (last_q <= RED_ZONE), YELLOW_ZONE, q)
            scores[t] = log_scores(reported)
            if learn:  # in place: the (streams, historic_window) history is never copied
                self.recent[rows, seen % k] = surprise
                self.history[rows, seen % window] = average
                seen += 1
                last_q = q
        if learn:
            self.seen[rows] = seen
            self.mean[rows], self.std[rows], self.last_q[rows] = mean, std, last_q
        return scores

    def _estimates(self, rows: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_estimate` for several streams: one gather per distinct ``seen`` (streams fed in
        lockstep share it)."""
        mean, std = np.empty(len(rows)), np.empty(len(rows))
        for count in np.unique(seen):
            members = np.flatnonzero(seen == count)
            first = max(self.learning_period, int(count) - self.historic_window)
            values = self.history[rows[members][:, None], np.arange(first, count) % self.historic_window]
            mean[members] = np.maximum(values.mean(1), MEAN_FLOOR)
            std[members] = np.sqrt(np.maximum(values.var(1), VAR_FLOOR))
        return mean, std


def likelihood_scores(surprises, learning_period: int, estimation_samples: int, **settings) -> np.ndarray:
    """The likelihood scores (n,) in [0, 1] of one whole series of surprises (n,), causally.

    Same computation as streaming the surprises through :class:`AnomalyLikelihood`;
    ``settings`` are the other :class:`LikelihoodEstimator` parameters.
    """
    surprises = np.asarray(surprises, dtype=float)
    if surprises.ndim != 1 or not np.all(np.isfinite(surprises)):
        raise ValueError(f"surprises must be a finite 1-D array of shape (n,); got shape {surprises.shape}")
    estimator = LikelihoodEstimator(learning_period, estimation_samples, **settings)
    estimator._grow(1)
    return estimator._block(surprises[:, None], np.zeros(1, dtype=np.int64), learn=True)[:, 0]


class AnomalyLikelihood(LikelihoodEstimator, ScoreTransform):
    """NAB's anomaly likelihood around a scorer of surprises (see the module doc).

    Parameters
    ----------
    scorer : StreamScorer or SeasonalSurprise
        Gives a surprise (>= 0) per point, with the river protocol.
    learning_period, estimation_samples, averaging_window, historic_window, reestimation_period : int
        See :class:`LikelihoodEstimator` (nupic's defaults 288, 100, 10, 8640, 100; for a series
        whose first ``n`` points fitted the detector, NAB uses ``n // 2`` and ``n - n // 2``).
    alarm_threshold : float in (0, 1], default 0.5
        Scores at or above it are alarms (0.5: a tail probability of 1e-5).
    bounded : bool, default False
        Map each surprise ``s`` to ``1 - exp(-s)`` in ``[0, 1)`` before the estimator sees it. HTM's
        raw anomaly scores, for which NAB's estimator was written, lie in ``[0, 1]``; a surprise is
        unbounded, and one very large surprise can carry a 10-point average past the red zone on its
        own. Bounded, a lone surprise adds at most ``1 / averaging_window`` to the average, and only a
        run of large surprises is judged unlikely.

    Examples
    --------
    >>> stream = AnomalyLikelihood(StreamScorer(detector))    # doctest: +SKIP
    >>> for x in points:                                      # doctest: +SKIP
    ...     score = stream.score_one(x)
    ...     stream.learn_one(x)
    ...     if stream.classify(score): print("alarm")
    """

    INNER = "scorer"

    def __init__(self, scorer, learning_period: int = 288, estimation_samples: int = 100,
                 averaging_window: int = 10, historic_window: int = 8640, reestimation_period: int = 100,
                 alarm_threshold: float = 0.5, bounded: bool = False) -> None:
        super().__init__(learning_period, estimation_samples, averaging_window, historic_window,
                         reestimation_period)
        self.scorer = scorer
        self.alarm_threshold = check_number("alarm_threshold", alarm_threshold, 0.0, 1.0, low_open=True)
        if not isinstance(bounded, (bool, np.bool_)):
            raise TypeError(f"bounded must be a bool; got {bounded!r}")
        self.bounded = bool(bounded)

    def settings(self) -> dict:
        settings = {**self._estimator_settings(), "alarm_threshold": self.alarm_threshold}
        return {**settings, "bounded": True} if self.bounded else settings  # a default chain's file is as before

    def _transform(self, scores: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Likelihood scores of a block of surprises: :meth:`_block` (of ``1 - exp(-s)`` with ``bounded``)."""
        return self._block(-np.expm1(-scores) if self.bounded else scores, rows, learn)

    def _transform_one(self, score: float, row: int, learn: bool) -> float:
        """The one-point path: :meth:`_point`."""
        return self._point(-math.expm1(-score) if self.bounded else score, row, learn)

    # ------------------------------------------------------------ protocol
    def classify(self, score: float) -> bool:
        """Whether ``score`` is an alarm (``score >= alarm_threshold``)."""
        return score >= self.alarm_threshold

    def score_then_learn(self, chunk, stream: Hashable = 0):
        """Score, then learn, each row of a chunk of one stream (Series, DataFrame or array (n[, d])).

        Returns a DataFrame on the chunk's index (a RangeIndex for arrays) with
        columns ``surprise``, ``score`` (in [0, 1]) and ``alarm`` (bool).
        """
        import pandas as pd

        surprises = self.scorer.score_then_learn(chunk, stream)
        index = surprises.index if isinstance(surprises, pd.Series) else pd.RangeIndex(len(surprises))
        surprises = np.asarray(surprises, dtype=float)
        scores = self._transform(surprises[:, None], self._rows([stream]), learn=True)[:, 0]
        return pd.DataFrame({"surprise": surprises, "score": scores, "alarm": scores >= self.alarm_threshold},
                            index=index)
