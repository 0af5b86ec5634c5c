"""``AnomalyLikelihood``: turns a stream scorer's surprises into calibrated scores and alarms.

A wrapper in the river sense: it has the scorer's protocol (``score_one``,
``learn_one``, ``score``, ``score_many``, ``learn_many``, ``process``) and adds
one behaviour. It follows the anomaly likelihood of Numenta's HTM detector
(Ahmad et al., 2017), per stream:

1. ``a_t`` — the mean of the last ``short_window`` surprises (``t`` included);
2. ``m, s`` — the running mean and standard deviation of ``a`` before ``t``
   (a plain mean over the first ``long_window`` points, then exponentially
   weighted with weight ``1 / long_window``), starting from the averaged
   surprises of the detector's training series; ``s`` is floored at ``min_std``;
3. ``q_t = P(Z > (a_t - m) / s)``, the Gaussian tail probability; the
   likelihood is ``1 - q_t``;
4. the score is ``L / (L + log(1e5))`` with ``L = -log q_t``, in [0, 1): a
   monotone map of the tail probability that, unlike HTM's log-score, never
   saturates, so the most surprising points stay ranked among themselves
   (tuned on NAB; see docs/detectors.md). 0.5 is a tail probability of 1e-5
   (HTM's alarm level); an alarm is raised where the score reaches
   ``alarm_threshold``.
"""
from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
from scipy.special import log_ndtr

from .series_input import as_series

SCORE_HALF = math.log(1e5)
"""``-log q`` at which the score is 0.5 (a tail probability of 1e-5)."""


def tail_score(z: np.ndarray) -> np.ndarray:
    """``L / (L + log 1e5)`` with ``L = -log P(Z > z)``, computed without underflow; in [0, 1)."""
    surprise = -log_ndtr(-np.asarray(z, dtype=float))
    return surprise / (surprise + SCORE_HALF)


class AnomalyLikelihood:
    """Anomaly-likelihood scores and alarms around a :class:`StreamScorer`.

    Parameters
    ----------
    scorer : StreamScorer
    short_window : int, default 1
        Surprises averaged into ``a_t``.
    long_window : int, default 5000
        Memory (in points) of the running mean and spread of ``a``.
    min_std : float, default 0.05
        Floor of that spread.
    alarm_threshold : float in (0, 1], default 0.5
        Scores at or above it are alarms (0.5: a tail probability of 1e-5).

    Examples
    --------
    >>> stream = AnomalyLikelihood(StreamScorer(detector))    # doctest: +SKIP
    >>> for x in points:                                      # doctest: +SKIP
    ...     score = stream.score_one(x)
    ...     stream.learn_one(x)
    ...     if stream.classify(score): print("alarm")
    """

    def __init__(self, scorer, short_window: int = 1, long_window: int = 5000, min_std: float = 0.05,
                 alarm_threshold: float = 0.5) -> None:
        for name, value in (("short_window", short_window), ("long_window", long_window)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        if not (isinstance(min_std, (int, float)) and min_std > 0):
            raise ValueError(f"min_std must be a number > 0; got {min_std!r}")
        if not (isinstance(alarm_threshold, (int, float)) and 0 < alarm_threshold <= 1):
            raise ValueError(f"alarm_threshold must be in (0, 1]; got {alarm_threshold!r}")
        self.scorer = scorer
        self.short_window = int(short_window)
        self.long_window = int(long_window)
        self.min_std = float(min_std)
        self.alarm_threshold = float(alarm_threshold)
        self.prior_mean, self.prior_var, self.prior_count = self._prior()
        self.recent = np.zeros((0, self.short_window - 1))
        self.seen = np.zeros(0, dtype=np.int64)
        self.mean = np.zeros(0)
        self.var = np.zeros(0)
        self.count = np.zeros(0, dtype=np.int64)

    def _prior(self) -> tuple[float, float, int]:
        """Mean, variance and count of the averaged training surprises (after the warm-up)."""
        det = self.scorer.detector
        raw = det.decision_scores_[det.warmup:]
        if len(raw) < self.short_window:
            return 0.0, 1.0, 0
        averaged = np.convolve(raw, np.full(self.short_window, 1.0 / self.short_window), mode="valid")
        return float(averaged.mean()), float(averaged.var()), min(len(averaged), self.long_window)

    def _sync(self) -> None:
        """Give streams the scorer allocated since the last call their prior statistics."""
        n = len(self.scorer.stream_ids) - len(self.mean)
        if n > 0:
            self.recent = np.concatenate([self.recent, np.zeros((n, self.short_window - 1))])
            self.seen = np.concatenate([self.seen, np.zeros(n, dtype=np.int64)])
            self.mean = np.concatenate([self.mean, np.full(n, self.prior_mean)])
            self.var = np.concatenate([self.var, np.full(n, self.prior_var)])
            self.count = np.concatenate([self.count, np.full(n, self.prior_count, dtype=np.int64)])

    @property
    def stream_ids(self) -> list:
        return self.scorer.stream_ids

    def _likelihood(self, surprises: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Log-likelihood scores (T, B) of surprises (T, B) for streams ``rows``."""
        self._sync()
        T, B = surprises.shape
        k = self.short_window
        # the last k - 1 surprises of each stream (oldest first; zeros before the first)
        history = np.concatenate([self.recent[rows].T, surprises])  # (k - 1 + T, B)
        sums = np.lib.stride_tricks.sliding_window_view(history, k, axis=0).sum(-1)  # (T, B)
        available = np.minimum(self.seen[rows][None, :] + np.arange(1, T + 1)[:, None], k)
        averages = sums / available
        mean, var, count = self.mean[rows], self.var[rows], self.count[rows]
        means, variances = np.empty((T, B)), np.empty((T, B))
        for t in range(T):
            means[t], variances[t] = mean, var
            weight = 1.0 / np.minimum(count + 1 + t, self.long_window)
            delta = averages[t] - mean
            mean = mean + weight * delta
            var = (1.0 - weight) * (var + weight * delta * delta)
        scores = tail_score((averages - means) / np.maximum(np.sqrt(variances), self.min_std))
        if learn:
            self.recent[rows] = history[T:].T if k > 1 else self.recent[rows]
            self.seen[rows] += T
            self.mean[rows], self.var[rows], self.count[rows] = mean, var, count + T
        return scores

    # ------------------------------------------------------------ protocol
    def classify(self, score: float) -> bool:
        """Whether ``score`` is an alarm (``score >= alarm_threshold``)."""
        return score >= self.alarm_threshold

    def _point_score(self, surprise: float, row: int, learn: bool) -> float:
        """The block computation of :meth:`_likelihood` for one point, in scalars."""
        k, raw = self.short_window, surprise
        recent = self.recent[row]
        average = (float(recent.sum()) + raw) / min(int(self.seen[row]) + 1, k)
        mean, var, count = float(self.mean[row]), float(self.var[row]), int(self.count[row])
        z = (average - mean) / max(math.sqrt(var), self.min_std)
        score = float(tail_score(z))
        if learn:
            if k > 1:
                recent[:-1] = recent[1:]
                recent[-1] = raw
            weight = 1.0 / min(count + 1, self.long_window)
            delta = average - mean
            self.mean[row] = mean + weight * delta
            self.var[row] = (1.0 - weight) * (var + weight * delta * delta)
            self.count[row] += 1
            self.seen[row] += 1
        return score

    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Likelihood score in [0, 1] of point ``x`` for ``stream``; changes no state."""
        values, row, _ = self.scorer._one(x, timestamp, stream)
        self._sync()
        surprise = self.scorer._point_surprise(self.scorer._point_normalized(values, row), row)
        return self._point_score(surprise, row, learn=False)

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by ``x``: the scorer, then the likelihood statistics."""
        values, row, time = self.scorer._one(x, timestamp, stream)
        self._sync()
        self._point_score(self.scorer._learn_point(values, row, time), row, learn=True)

    def score_many(self, X, streams=None) -> np.ndarray:
        """Scores (n_streams,) of one point per stream; changes no state."""
        surprises = self.scorer.score_many(X, streams)
        rows = self.scorer._rows(self.scorer._streams(streams, len(surprises)))
        return self._likelihood(surprises[None], rows, learn=False)[0]

    def learn_many(self, X, streams=None, timestamps=None) -> None:
        """Advance each stream by its point in ``X`` (n_streams, n_channels): one batched step."""
        self.process(np.asarray(X)[None], streams, None if timestamps is None else [timestamps])

    def process(self, X, streams=None, timestamps=None) -> np.ndarray:
        """Score, then learn, a block (T, n_streams[, n_channels]); returns scores (T, n_streams)."""
        surprises = self.scorer.process(X, streams, timestamps)
        rows = self.scorer._rows(self.scorer._streams(streams, surprises.shape[1]))
        return self._likelihood(surprises, rows, learn=True)

    def score(self, chunk, stream: Hashable = 0):
        """Score, then learn, each row of a chunk of one stream.

        Returns a DataFrame on the chunk's index (a RangeIndex for arrays) with
        columns ``surprise``, ``score`` (in [0, 1]) and ``alarm`` (bool).
        """
        import pandas as pd

        series = as_series(chunk, "chunk", n_channels=self.scorer.n_channels)
        surprises = np.asarray(self.scorer.score(chunk, stream), dtype=float)
        scores = self._likelihood(surprises[:, None], self.scorer._rows([stream]), learn=True)[:, 0]
        index = series.index if series.index is not None else pd.RangeIndex(len(scores))
        return pd.DataFrame({"surprise": surprises, "score": scores, "alarm": scores >= self.alarm_threshold},
                            index=index)

    def save(self, path) -> None:
        """Write the complete state (scorer included) to ``path``."""
        from .persistence import save_stream

        save_stream(self, path)

    @classmethod
    def load(cls, path) -> "AnomalyLikelihood":
        """Read a wrapper written by :meth:`save`."""
        from .persistence import load_stream

        return load_stream(path, expect=cls)
