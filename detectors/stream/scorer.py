"""``StreamScorer``: score one or many live streams with a fitted detector.

The river protocol: :meth:`StreamScorer.score_one` returns the surprise of a
point under the forecast the stream's model made after the previous point — it
changes nothing, so calling it twice gives the same value — and
:meth:`StreamScorer.learn_one` advances the stream by that point: one recurrent
step, the online normaliser and the forecast of the next point. Many streams,
named by stream ids, advance together in one batched step
(:meth:`score_many`, :meth:`learn_many`, :meth:`process`). The one-point path
lives in :mod:`~sparsernn.detectors.stream.point` and the conversion and checks of
the caller's points and timestamps in :mod:`~sparsernn.detectors.stream.inputs`
(mixins of the scorer).

Bad input follows :mod:`~sparsernn.detectors.series_input`: NaN / inf, a wrong
width or rank, non-numbers and timestamps that do not increase are rejected
with an error *before* any state changes, so a rejected point leaves the
stream exactly as it was.
"""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ..normalization import ew_mean_var, halflife_to_alpha, online_scale, standardize
from ...core.inference import InferenceStepper
from ..checks import check_number
from .inputs import PointInputs
from .online import OnlineLearner, OnlineLearning
from .point import NO_TIME, OnePointPath
from .stream_ids import StreamIds
from ..series_input import as_series, check_feature_names
from ..horizons import horizon_surprise
from ..window_surprise import check_windows, standardized_residuals, window_surprise
from ..surprise import surprise

WINDOW_STATE = ("window_z", "window_ok", "window_var", "window_seen")
"""The per-stream arrays of the window-level surprise (with the detector's ``surprise_windows``)."""

HORIZON_STATE = ("horizon_mean", "horizon_var")
"""The per-stream arrays of a multi-horizon forecaster (the detector's ``forecast_horizon`` above 1)."""


class StreamScorer(StreamIds, PointInputs, OnePointPath):
    """Streaming scorer around a fitted :class:`SelectiveUpdateDetector`.

    Parameters
    ----------
    detector : SelectiveUpdateDetector
        A fitted detector; its forecaster is shared, not copied.
    normalizer_halflife : float, optional
        Online normalisation: each stream's centre and scale start at the
        detector's fit-time scaling and follow an exponentially weighted mean
        and standard deviation with this half-life (in points). None keeps the
        fit-time scaling, so a stream's scores equal ``decision_function``'s.
    min_scale : float, default 0.05
        Floor of the online scale, as a share of the fit-time scale.
    learn : OnlineLearning, dict, bool or None, default None
        Online learning of the forecaster's weights while streaming
        (:class:`~sparsernn.detectors.stream.online.OnlineLearning`: ``learning_rate``,
        ``window``, ``every``, ``skip_anomalous_above``, ``max_grad_norm``; a dict of those,
        or True for the defaults). Each stream gets its own copy of the weights and of Adam's
        state; the score of a point is computed before the stream learns from it. None / False
        (default): the weights stay as fitted (only state, normaliser and forecast advance).

    The detector's ``surprise_windows`` (window-level surprise, :mod:`~sparsernn.detectors.window_surprise`)
    applies here too: each stream also keeps its last ``max(windows) - 1`` standardised residuals
    (``window_z``, ``window_ok``) and each window's calibration (``window_var``, ``window_seen``),
    and every point goes through the block path. So does a detector's ``forecast_horizon`` above 1
    (:mod:`~sparsernn.detectors.horizons`): each stream keeps the forecasts made at its last ``K`` points
    (``horizon_mean``, ``horizon_var``, ``(K, d K)`` each), and a point's score is the mean surprise under
    those made for it; online learning (``learn``) does not support it (``ValueError``).

    Attributes
    ----------
    stream_ids : list
        Ids of the streams seen so far (str or int), in order of arrival.
    learner : OnlineLearner or None
        The per-stream weights, optimiser state and window buffers (with ``learn``).
    STATE : tuple of str
        Names of the per-stream arrays (first axis = stream row), what
        :meth:`state_arrays` returns and :meth:`save` writes.

    Notes
    -----
    Per stream the scorer keeps the recurrent state, the forecast (mean and
    variance) of the next point, the normaliser's mean and variance, the
    number of points learned and the last timestamp. The first
    ``detector.warmup`` points of a stream score 0.0.

    Examples
    --------
    >>> scorer = StreamScorer(detector)                       # doctest: +SKIP
    >>> for x in stream:                                      # doctest: +SKIP
    ...     score = scorer.score_one(x)
    ...     scorer.learn_one(x)
    """

    STATE = ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var", "count", "last_time")

    def __init__(self, detector, normalizer_halflife: float | None = None, min_scale: float = 0.05,
                 learn=None) -> None:
        check_is_fitted(detector, ["model_", "center_", "scale_"])
        if normalizer_halflife is not None:
            normalizer_halflife = check_number("normalizer_halflife", normalizer_halflife, 0.0, low_open=True)
        self.learn = OnlineLearning.coerce(learn)
        self.detector = detector
        self.normalizer_halflife = normalizer_halflife
        self.min_scale = check_number("min_scale", min_scale, 0.0, low_open=True)
        names = getattr(detector, "feature_names_", None)
        self.dict_keys: list | None = None if names is None else list(names)
        self.model = detector.model_
        self.n_channels = detector.n_channels_
        self.stream_ids: list = []
        self._rows_of: dict = {}
        # core picks the kernel per block (inference.last_backend says which ran); _step_row is its
        # one-point kernel (None for a routed layer)
        self.inference = InferenceStepper(self.model.layer, self.model.readout())
        self._step_row = self.inference.step_row
        # constants of the one-point path, read once
        self._center0, self._scale0 = float(detector.center_[0]), float(detector.scale_[0])
        self._half = np.float32(0.5 / self.n_channels)
        # the one-channel shortcut of score_one / learn_one (a plain float, a stream seen, no timestamp)
        self.learner = None
        self.horizon = self.model.horizon
        if self.horizon > 1:  # every point goes through the block path (_advance_horizons)
            if self.learn is not None:
                raise ValueError(f"learn (online learning) does not support a multi-horizon forecaster; got "
                                 f"learn={learn!r} with the detector's forecast_horizon={self.horizon}")
            self._step_row = None
        if self.learn is not None:  # every point goes through the block path, with the stream's own weights
            self.learner = OnlineLearner(self.model, self.learn, self.n_channels)
            self._step_row = None
        self.windows = check_windows(getattr(detector, "surprise_windows", None))
        if self.windows is not None:  # the window statistic lives in the block path (_advance)
            self._step_row = None
        self._scalar_path = self.n_channels == 1 and self._step_row is not None
        self._u_one = np.zeros(1, dtype=np.float32)
        d, size = self.n_channels, self.model.layer.state_size
        self.state = np.zeros((0, size), dtype=np.float32)
        self.forecast_mean = np.zeros((0, d), dtype=np.float32)
        self.forecast_var = np.ones((0, d), dtype=np.float32)
        self.norm_mean = np.zeros((0, d))
        self.norm_var = np.zeros((0, d))
        self.count = np.zeros(0, dtype=np.int64)
        self.last_time = np.zeros(0, dtype=np.int64)
        width = 0 if self.windows is None else max(self.windows) - 1
        self.window_z = np.zeros((0, width, d))
        self.window_ok = np.zeros((0, width), dtype=bool)
        self.window_var = np.ones((0, 0 if self.windows is None else len(self.windows), d))
        self.window_seen = np.zeros(0, dtype=np.int64)
        rows, width = (self.horizon, d * self.horizon) if self.horizon > 1 else (0, 0)
        self.horizon_mean = np.zeros((0, rows, width), dtype=np.float32)
        self.horizon_var = np.ones((0, rows, width), dtype=np.float32)

    # ------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Per-stream arrays by name (the names in ``STATE``, and with ``learn`` the learner's
        ``learn.*``: weights, Adam's moments and steps, window buffers; with ``surprise_windows``
        ``window_z``, ``window_ok``, ``window_var``, ``window_seen``; copies, first axis = stream row)."""
        arrays = {name: getattr(self, name).copy() for name in self._state_names()}
        if self.learner is not None:
            arrays.update({name: tensor.numpy().copy() for name, tensor in self.learner.arrays().items()})
        return arrays

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the per-stream arrays written by :meth:`state_arrays` (shapes and dtypes as those)."""
        for name in self._state_names():
            setattr(self, name, np.array(arrays[name], copy=True))
        if self.learner is not None:
            self.learner.set_arrays(arrays)

    def _state_names(self) -> tuple[str, ...]:
        """``STATE``, plus the window-level surprise's residual buffers and a multi-horizon forecaster's
        forecasts when they are on."""
        names = self.STATE if self.windows is None else self.STATE + WINDOW_STATE
        return names if self.horizon == 1 else names + HORIZON_STATE

    def _grow(self, n: int) -> None:
        d = self.n_channels
        self.state = np.concatenate([self.state, np.zeros((n, self.state.shape[1]), dtype=np.float32)])
        self.forecast_mean = np.concatenate([self.forecast_mean, np.zeros((n, d), dtype=np.float32)])
        self.forecast_var = np.concatenate([self.forecast_var, np.ones((n, d), dtype=np.float32)])
        self.norm_mean = np.concatenate([self.norm_mean, np.tile(self.detector.center_, (n, 1))])
        self.norm_var = np.concatenate([self.norm_var, np.tile(self.detector.scale_ ** 2, (n, 1))])
        self.count = np.concatenate([self.count, np.zeros(n, dtype=np.int64)])
        self.last_time = np.concatenate([self.last_time, np.full(n, NO_TIME, dtype=np.int64)])
        self.window_z = np.concatenate([self.window_z, np.zeros((n,) + self.window_z.shape[1:])])
        self.window_ok = np.concatenate([self.window_ok, np.zeros((n,) + self.window_ok.shape[1:], dtype=bool)])
        self.window_var = np.concatenate([self.window_var, np.ones((n,) + self.window_var.shape[1:])])
        self.window_seen = np.concatenate([self.window_seen, np.zeros(n, dtype=np.int64)])
        self.horizon_mean = np.concatenate([self.horizon_mean, np.zeros((n,) + self.horizon_mean.shape[1:], np.float32)])
        self.horizon_var = np.concatenate([self.horizon_var, np.ones((n,) + self.horizon_var.shape[1:], np.float32)])
        if self.learner is not None:  # a new learner object: a clone of _with_streams shares nothing
            self.learner = self.learner.grown(n)

    # ------------------------------------------------------------ the step
    def _normalized(self, values: np.ndarray, rows: np.ndarray, update: bool) -> np.ndarray:
        """Normalise ``values`` (T, B, d) with each stream's statistics *before* each point."""
        det = self.detector
        if self.normalizer_halflife is None:
            return standardize(values, det.center_, det.scale_)
        alpha, floor = halflife_to_alpha(self.normalizer_halflife), self.min_scale * det.scale_
        with np.errstate(over="ignore"):  # (x - mean) may overflow to inf: ew_step clips it
            means, variances, mean, var = ew_mean_var(values, self.norm_mean[rows], self.norm_var[rows], alpha,
                                                      floor)
        if update:
            self.norm_mean[rows], self.norm_var[rows] = mean, var
        return standardize(values, means, online_scale(variances, floor))

    def _advance(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Surprise of each point of ``values`` (T, B, d) for streams ``rows``; with ``learn`` the
        streams advance past the block (one batched recurrent step per row)."""
        T, B = values.shape[:2]
        u = self._normalized(values, rows, update=learn).astype(np.float32)
        seen = self.count[rows][None, :] + np.arange(T)[:, None]
        if self.horizon > 1:
            return self._advance_horizons(u, rows, seen, learn)
        if learn and self.learner is not None:
            scores, state, mean, var, forecasts = self.learner.advance(
                u, rows, self.state[rows], self.forecast_mean[rows], self.forecast_var[rows], self.count[rows],
                self.detector.warmup, self._half, forecasts=self.windows is not None)
            if self.windows is not None:
                scores = self._windowed(scores, u, *forecasts, seen, rows, learn)
            self.state[rows] = state
            self.forecast_mean[rows], self.forecast_var[rows] = mean, var
            self.count[rows] += T
            return scores
        prev_mean, prev_var = self.forecast_mean[rows][None], self.forecast_var[rows][None]
        if learn:
            state = self.state[rows]
            mean, var, state = self.inference.run(u, state)
            prev_mean = np.concatenate([prev_mean, mean[:-1]])
            prev_var = np.concatenate([prev_var, var[:-1]])
        scores = surprise(u, prev_mean, prev_var, self._half).astype(np.float64)
        scores[seen < self.detector.warmup] = 0.0
        if self.windows is not None:
            scores = self._windowed(scores, u, prev_mean, prev_var, seen, rows, learn)
        if learn:
            self.state[rows] = state
            self.forecast_mean[rows], self.forecast_var[rows] = mean[-1], var[-1]
            self.count[rows] += T
        return scores

    def _advance_horizons(self, u: np.ndarray, rows: np.ndarray, seen: np.ndarray, learn: bool) -> np.ndarray:
        """:meth:`_advance` of a multi-horizon forecaster (:mod:`~sparsernn.detectors.horizons`) for the
        normalised block ``u`` (T, B, d); ``seen`` (T, B): each point's index in its stream."""
        T, d = u.shape[0], self.n_channels
        before_m = self.horizon_mean[rows].transpose(1, 0, 2)  # (K, B, d K), oldest first
        before_v = self.horizon_var[rows].transpose(1, 0, 2)
        if learn:
            mean, var, state = self.inference.run(u, self.state[rows])
            seq_m, seq_v = np.concatenate([before_m, mean]), np.concatenate([before_v, var])
        else:
            seq_m, seq_v = before_m, before_v
        scores = horizon_surprise(u, seq_m, seq_v, self.count[rows], self.horizon, self._half)
        scores[seen < self.detector.warmup] = 0.0
        if self.windows is not None:  # horizon 1's forecasts of the block's points
            last = slice(self.horizon - 1, self.horizon - 1 + T)
            scores = self._windowed(scores, u, seq_m[last, :, :d], seq_v[last, :, :d], seen, rows, learn)
        if learn:
            self.state[rows] = state
            self.horizon_mean[rows] = seq_m[T:].transpose(1, 0, 2)
            self.horizon_var[rows] = seq_v[T:].transpose(1, 0, 2)
            self.forecast_mean[rows], self.forecast_var[rows] = mean[-1, :, :d], var[-1, :, :d]
            self.count[rows] += T
        return scores

    def _windowed(self, scores: np.ndarray, u: np.ndarray, mean: np.ndarray, var: np.ndarray, seen: np.ndarray,
                  rows: np.ndarray, learn: bool) -> np.ndarray:
        """``max(scores, window statistics)`` (T, B) of the block ``u`` (T, B, d) under the forecasts
        ``mean`` / ``var`` (T, B, d) made for its points; with ``learn`` the residual buffers advance."""
        stats, ring, ring_ok, calibration, scored = window_surprise(
            standardized_residuals(u, mean, var), seen >= self.detector.warmup, self.window_z[rows],
            self.window_ok[rows], self.window_var[rows], self.window_seen[rows], self.windows)
        if learn:
            self.window_z[rows], self.window_ok[rows] = ring, ring_ok
            self.window_var[rows], self.window_seen[rows] = calibration, scored
        return np.maximum(scores, stats)

    # ------------------------------------------------------------ public
    def score_one(self, x, timestamp=None, stream: Hashable = 0) -> float:
        """Surprise of point ``x`` for ``stream``; changes no state.

        Parameters
        ----------
        x : float, sequence of n_channels floats, or dict of them
        timestamp : datetime-like, optional
            Checked to come after the stream's last learned timestamp.
        stream : str or int, default 0
        """
        row = self._fast_row(x, timestamp, stream)
        if row is not None:
            return self._scalar_surprise(np.float32(self._scalar_normalized(float(x), row)), row)
        scorer = self._with_streams([stream])
        values, row, _ = scorer._one(x, timestamp, stream)
        if self.windows is not None or self.horizon > 1:
            return float(scorer._advance(values[None], np.array([row]), learn=False)[0, 0])
        return scorer._point_surprise(scorer._point_normalized(values, row), row)

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by point ``x``: one recurrent step, normaliser, next forecast."""
        row = self._fast_row(x, timestamp, stream)
        if row is None:
            self._learn_point(*self._one(x, timestamp, stream), surprise=False)
            self._fix_keys(x)
            return
        x, u = float(x), self._u_one
        u[0] = self._scalar_normalized(x, row)  # rounded to float32 as np.array(..., dtype=np.float32) rounds
        if self.normalizer_halflife is not None:
            self._update_scalar_normalizer(x, row)
        self._step_point(u, row)

    def score_many(self, X, streams=None) -> np.ndarray:
        """Surprise of one point per stream, ``X`` (n_streams, n_channels) or (n_streams,); no state changes.
        Returns an array of shape (n_streams,)."""
        scorer = self._with_streams(streams)
        block = scorer.as_block(np.asarray(X)[None], "X")
        return scorer._advance(block, scorer.stream_rows(scorer.check_streams(streams, block.shape[1])), learn=False)[0]

    def learn_many(self, X, streams=None, timestamps=None) -> None:
        """Advance every stream of ``streams`` by its point in ``X`` (n_streams, n_channels): one batched step."""
        self.process(np.asarray(X)[None], streams, None if timestamps is None else [timestamps])

    def process(self, X, streams=None, timestamps=None) -> np.ndarray:
        """Score, then learn, a block of T points for each of B streams in one layer call.

        Parameters
        ----------
        X : array of shape (T, n_streams, n_channels), or (T, n_streams) for one channel
        streams : sequence of str or int, optional
            The stream of each column (default: stream 0 when n_streams == 1).
        timestamps : array-like of shape (T, n_streams) of datetime-likes, optional

        Returns
        -------
        surprises : array of shape (T, n_streams)
        """
        block = self.as_block(X, "X")
        names = self.check_streams(streams, block.shape[1])
        rows, new = self.resolve_streams(names)
        times = None if timestamps is None else self.as_times(timestamps, block.shape[:2])
        self._check_times(rows, times, names)
        if new:  # everything is checked: now the new streams get their rows
            self._register(new)
        scores = self._advance(block, rows, learn=True)
        if times is not None:
            self.last_time[rows] = times[-1]
        return scores

    def score_then_learn(self, chunk, stream: Hashable = 0):
        """Score, then learn, each row of a chunk of one stream.

        Parameters
        ----------
        chunk : DataFrame, Series or array of shape (n_timestamps, n_channels)
            With a DatetimeIndex, timestamps must increase and follow the stream's last one.

        Returns
        -------
        surprises : array of shape (n_timestamps,), or a Series on the chunk's index
        """
        check_feature_names(getattr(self.detector, "feature_names_in_", None), chunk, "chunk")
        series = as_series(chunk, "chunk", n_channels=self.n_channels)
        times = None
        if isinstance(series.index, pd.DatetimeIndex):
            times = series.index.as_unit("ns").asi8.reshape(-1, 1)
        return series.wrap(self.process(series.values[:, None, :], [stream], times)[:, 0], name="surprise")

    def save(self, path) -> None:
        """Write the complete state to ``path`` (see :mod:`~sparsernn.detectors.stream.persistence`)."""
        from .persistence import save_stream

        save_stream(self, path)

    @classmethod
    def load(cls, path) -> "StreamScorer":
        """Read a scorer written by :meth:`save`."""
        from .persistence import load_stream

        return load_stream(path, expect=cls)
