"""``SeasonalSurprise``: add the surprise of a point against the same time one season (a day) earlier.

A wrapper in the river sense around a :class:`StreamScorer` (same protocol:
``score_one``, ``learn_one``, ``score_many``, ``learn_many``, ``process``,
``score_then_learn``; per-stream state; ``save`` / ``load``). Its surprise is the
scorer's plus a seasonal one, per stream and channel ``c``:

- ``r_t = x_t - x_{t-P}``, the residual against the point one period ``P``
  (rows) earlier, on the raw values;
- ``seasonal_t = 0.5 * mean_c r_t,c**2 / v_c``, where ``v`` is the mean of
  ``r**2`` over the stream's residuals *before* ``t`` (a plain mean over the
  first ``memory`` residuals, then exponentially weighted with weight
  ``1 / memory``), floored at ``min_var`` and capped at ``max_surprise``;
- 0 while there is no residual yet (``t < P``) or no variance (the first one).

It is causal: the point at ``t`` is judged with state from points before
``t`` only. The period is an explicit ``period=`` (rows, for every stream, or
per stream with :meth:`set_period`), or, for a stream without one, is derived
from the timestamps of the first call that brings at least two of them (a
pandas chunk's DatetimeIndex, or ``process(..., timestamps=)``) by
:func:`rows_per_season`: the season (``"1D"``) over the median step.

Why: a one-step forecaster adapts within a few points, so a change of the
daily pattern (a missing peak, a peak at the wrong hour, a level that is
normal for the day but not for the hour) surprises it only briefly; the
residual against yesterday keeps the change visible for as long as it lasts.
"""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

from ..checks import check_int, check_number
from ..series_input import as_series
from .wrappers import StreamWrapper


RESIDUAL_LIMIT = 1e150
"""Bound of a residual ``x_t - x_{t-P}`` (raw units), so that its square and the variance stay finite."""


def median_step_ns(timestamps) -> float:
    """The median step of ``timestamps`` (n >= 2, increasing on the median), in nanoseconds."""
    stamps = np.asarray(pd.DatetimeIndex(timestamps).as_unit("ns").asi8, dtype=np.int64)
    if len(stamps) < 2:
        raise ValueError(f"timestamps must hold at least 2 timestamps to find a period; got {len(stamps)}")
    step = float(np.median(np.diff(stamps)))
    if not step > 0:
        raise ValueError(f"timestamps must increase (median step {step} ns) to find a period")
    return step


def rows_per_season(timestamps, season="1D") -> int:
    """Rows per ``season`` (a Timedelta-like) from the median step of ``timestamps`` (n >= 2,)."""
    return max(1, int(round(pd.Timedelta(season).value / median_step_ns(timestamps))))


def season_periods(timestamps, seasons=("1D", "7D")) -> tuple[float, ...]:
    """Rows per season for each of ``seasons`` (Timedelta-likes), from the median step of
    ``timestamps`` (n >= 2,), not rounded: the periods of rhythm neurons on the series' clock
    (``SparseRecurrent(rhythm_periods=...)``; ``SelectiveUpdateNAB(rhythm_seasons=...)``).

    Raises ``ValueError`` for a season shorter than 2 rows (a rhythm cannot hold it) and for
    timestamps that give no step; a season longer than the timestamps is allowed (its phase still
    follows the row index)."""
    if isinstance(seasons, (str, bytes)) or not hasattr(seasons, "__iter__"):
        raise TypeError(f"seasons must be a sequence of Timedelta-likes ('1D', '7D', ...); got {seasons!r}")
    seasons = list(seasons)
    if not seasons:
        raise ValueError("seasons must name at least one season ('1D', '7D', ...); got none")
    step = median_step_ns(timestamps)
    periods = []
    for season in seasons:
        try:
            length = pd.Timedelta(season).value
        except (TypeError, ValueError) as error:
            raise ValueError(f"seasons must be Timedelta-likes ('1D', '12h', '7D', ...); got {season!r}") from error
        rows = length / step
        if not rows >= 2:
            raise ValueError(f"season {season!r} is {rows:g} rows at the series' median step of "
                             f"{pd.Timedelta(step, 'ns')}; a rhythm needs a period of at least 2 rows")
        periods.append(float(rows))
    return tuple(periods)


class SeasonalSurprise(StreamWrapper):
    """The scorer's surprise plus the surprise of the residual against one period earlier (see the module doc).

    Parameters
    ----------
    scorer : StreamScorer
    period : int, optional
        Rows per season for every stream. None: per stream from :meth:`set_period` or from timestamps.
    season : Timedelta-like, default "1D"
        The season whose length in rows is derived from timestamps.
    memory : int, default 1000
        Residuals averaged plainly into the variance, then its exponential memory.
    min_var : float, default 1e-12
        Floor of the variance (a series that repeats exactly has ``v = 0``).
    max_surprise : float, default 1e6
        Cap of the seasonal surprise.

    Attributes (first axis: the stream row)
    ---------------------------------------
    period : (n_streams,) int64, rows per season (0: not known yet)
    values : (n_streams, max period, n_channels) the last period of points, a ring indexed by ``seen``
    seen : (n_streams,) int64, points learned
    var : (n_streams, n_channels) the mean squared residual
    residuals : (n_streams,) int64, residuals learned
    """

    INNER = "scorer"
    STATE = ("period", "values", "seen", "var", "residuals")

    def __init__(self, scorer, period: int | None = None, season="1D", memory: int = 1000,
                 min_var: float = 1e-12, max_surprise: float = 1e6) -> None:
        self.scorer = scorer
        self.default_period = None if period is None else check_int("period", period, 1)
        try:
            self.season = str(pd.Timedelta(season))
        except (TypeError, ValueError) as error:
            raise TypeError(f"season must be a Timedelta-like (e.g. '1D'); got {season!r}") from error
        if pd.Timedelta(season) <= pd.Timedelta(0):
            raise ValueError(f"season must be positive; got {season!r}")
        self.memory = check_int("memory", memory, 1)
        self.min_var = check_number("min_var", min_var, 0.0, low_open=True)
        self.max_surprise = check_number("max_surprise", max_surprise, 0.0, low_open=True)
        d = self._scorer.n_channels
        self.period = np.zeros(0, dtype=np.int64)
        self.values = np.zeros((0, self.default_period or 1, d))
        self.seen = np.zeros(0, dtype=np.int64)
        self.var = np.zeros((0, d))
        self.residuals = np.zeros(0, dtype=np.int64)

    def settings(self) -> dict:
        return {"period": self.default_period, "season": self.season, "memory": self.memory,
                "min_var": self.min_var, "max_surprise": self.max_surprise}

    def _grow(self, n: int) -> None:
        d = self.var.shape[1]
        self.period = np.concatenate([self.period, np.full(n, self.default_period or 0, dtype=np.int64)])
        self.values = np.concatenate([self.values, np.zeros((n,) + self.values.shape[1:])])
        self.seen = np.concatenate([self.seen, np.zeros(n, dtype=np.int64)])
        self.var = np.concatenate([self.var, np.zeros((n, d))])
        self.residuals = np.concatenate([self.residuals, np.zeros(n, dtype=np.int64)])

    def set_period(self, stream: Hashable, period: int) -> None:
        """Give ``stream`` its period (rows per season) before its first point."""
        period = check_int("period", period, 1)
        self._commit_periods(self._rows([stream]), np.array([period]), [stream])

    def _commit_periods(self, rows: np.ndarray, periods: np.ndarray, streams: list) -> None:
        """Set the periods (B,) of streams ``rows`` (B,), widening the ring of values if needed."""
        for b, (row, period) in enumerate(zip(rows.tolist(), periods.tolist())):
            if self.seen[row] > 0 and self.period[row] != period:
                raise ValueError(f"stream {streams[b]!r} has learned points with period {self.period[row]}; "
                                 f"cannot change it to {period}")
            self.period[row] = period
        width = int(periods.max())
        if width > self.values.shape[1]:
            pad = np.zeros((len(self.values), width - self.values.shape[1], self.values.shape[2]))
            self.values = np.concatenate([self.values, pad], axis=1)

    def _periods(self, streams: list, times: np.ndarray | None) -> np.ndarray:
        """Periods (B,) of ``streams``: theirs, or (not stored yet) from ``times`` (T, B) int64 ns.
        Changes nothing (a new stream is not registered)."""
        rows, _ = self._scorer.resolve_streams(streams)
        self._sync()
        known = rows < len(self.period)
        periods = np.full(len(rows), self.default_period or 0, dtype=np.int64)
        periods[known] = self.period[rows[known]]
        for b in np.flatnonzero(periods == 0):
            if times is None or len(times) < 2:
                raise ValueError(f"stream {streams[b]!r} has no period: pass period= (rows per season), call "
                                 f"set_period, or give at least 2 timestamps in its first call")
            periods[b] = rows_per_season(times[:, b], self.season)
        return periods

    def _seasonal(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Seasonal surprises (T, B) of ``values`` (T, B, C) of streams ``rows`` (B,), whose periods are set."""
        period, seen, var = self.period[rows], self.seen[rows].copy(), self.var[rows].copy()
        residuals = self.residuals[rows].copy()
        ring = self.values[rows]  # (B, width, C) copy
        lanes = np.arange(len(rows))
        out = np.zeros(values.shape[:2])
        for t, x in enumerate(values):
            position = seen % period
            has = seen >= period  # a point one period back exists
            judged = has & (residuals > 0)
            with np.errstate(over="ignore"):  # r**2 / var may overflow to inf: capped at max_surprise
                r = np.clip(x - ring[lanes, position], -RESIDUAL_LIMIT, RESIDUAL_LIMIT)
                z = 0.5 * (r * r / np.maximum(var, self.min_var)).mean(-1)
            out[t] = np.where(judged, np.minimum(z, self.max_surprise), 0.0)
            weight = 1.0 / np.minimum(residuals + 1, self.memory)
            var = np.where(has[:, None], (1.0 - weight[:, None]) * var + weight[:, None] * (r * r), var)
            residuals = residuals + has
            ring[lanes, position] = x
            seen = seen + 1
        if learn:
            self.values[rows], self.seen[rows], self.var[rows], self.residuals[rows] = ring, seen, var, residuals
        return out

    # ------------------------------------------------------------ protocol
    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Surprise (scorer's + seasonal) of ``x`` for ``stream``; changes no state."""
        if self._scorer.row_of(stream) is None or isinstance(stream, bool):
            return self._with_streams([stream]).score_one(x, timestamp, stream)
        surprise = self.scorer.score_one(x, timestamp=timestamp, stream=stream)
        self._periods([stream], None)
        rows = self._rows([stream])
        return float(surprise) + float(self._seasonal(self._scorer.as_point(x)[None], rows, learn=False)[0, 0])

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by ``x``: the scorer, then the seasonal state."""
        values = self._scorer.as_point(x)[None]
        self._periods([stream], None)
        self.scorer.learn_one(x, timestamp=timestamp, stream=stream)
        self._seasonal(values, self._rows([stream]), learn=True)

    def score_many(self, X, streams=None) -> np.ndarray:
        """Surprises (n_streams,) of one point per stream, ``X`` (n_streams[, n_channels]); no state changes."""
        view = self._with_streams(streams)
        if view is not self:
            return view.score_many(X, streams)
        surprises = np.asarray(self.scorer.score_many(X, streams), dtype=float)
        names = self._streams(streams, len(surprises))
        self._periods(names, None)
        rows = self._rows(names)
        return surprises + self._seasonal(self._scorer.as_block(np.asarray(X)[None], "X"), rows, learn=False)[0]

    def process(self, X, streams=None, timestamps=None) -> np.ndarray:
        """Score, then learn, a block (T, n_streams[, n_channels]); returns surprises (T, n_streams)."""
        values = self._scorer.as_block(X, "X")
        names = self._streams(streams, values.shape[1])
        times = None if timestamps is None else self._scorer.as_times(timestamps, values.shape[:2])
        periods = self._periods(names, times)
        surprises = np.asarray(self.scorer.process(X, streams, timestamps), dtype=float)
        rows = self._rows(names)
        self._commit_periods(rows, periods, names)
        return surprises + self._seasonal(values, rows, learn=True)

    def score_then_learn(self, chunk, stream: Hashable = 0):
        """Score, then learn, each row of a chunk of one stream; surprises (n,) or a Series on its index."""
        series = as_series(chunk, "chunk", n_channels=self.n_channels)
        times = None
        if isinstance(series.index, pd.DatetimeIndex):
            times = series.index.as_unit("ns").asi8.reshape(-1, 1)
        periods = self._periods([stream], times)
        surprises = np.asarray(self.scorer.score_then_learn(chunk, stream), dtype=float)
        rows = self._rows([stream])
        self._commit_periods(rows, periods, [stream])
        total = surprises + self._seasonal(series.values[:, None, :], rows, learn=True)[:, 0]
        return series.wrap(total, name="surprise")
