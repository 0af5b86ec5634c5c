"""``StreamScorer``: score one or many live streams with a fitted detector.

The river protocol: :meth:`StreamScorer.score_one` returns the surprise of a
point under the forecast the stream's model made after the previous point — it
changes nothing, so calling it twice gives the same value — and
:meth:`StreamScorer.learn_one` advances the stream by that point: one recurrent
step, the online normaliser and the forecast of the next point. Many streams,
named by stream ids, advance together in one batched step
(:meth:`score_many`, :meth:`learn_many`, :meth:`process`).

Bad input follows :mod:`~sparsernn.detectors.series_input`: NaN / inf, a wrong
width or rank, non-numbers and timestamps that do not increase are rejected
with an error *before* any state changes, so a rejected point leaves the
stream exactly as it was.
"""
from __future__ import annotations

import math
from functools import partial
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted

from .forecaster import fast_forward
from .normalization import ew_mean_var, halflife_to_alpha
from .numpy_step import NUMPY_MAX_STREAMS, NumpyForecasterStep, supports_numpy_step
from .torch_step import TorchBlockStep, supports_torch_step
from .series_input import as_series, check_finite

NO_TIME = np.iinfo(np.int64).min
"""Last-timestamp value of a stream that has not seen a timestamp."""


def timestamp_ns(timestamp) -> int:
    """A timestamp (pandas / numpy / datetime / str, or an int of nanoseconds) as int64 nanoseconds."""
    if isinstance(timestamp, (int, np.integer)) and not isinstance(timestamp, bool):
        return int(timestamp)
    try:
        return int(pd.Timestamp(timestamp).as_unit("ns").value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"timestamp must be a datetime-like or an int of nanoseconds; got {timestamp!r}") from error


class StreamScorer:
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

    Attributes
    ----------
    stream_ids : list
        Ids of the streams seen so far (str or int), in order of arrival.

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

    def __init__(self, detector, normalizer_halflife: float | None = None, min_scale: float = 0.05) -> None:
        check_is_fitted(detector, ["model_", "center_", "scale_"])
        if normalizer_halflife is not None and not (isinstance(normalizer_halflife, (int, float))
                                                    and normalizer_halflife > 0):
            raise ValueError(f"normalizer_halflife must be None or a number > 0; got {normalizer_halflife!r}")
        if not (isinstance(min_scale, (int, float)) and min_scale > 0):
            raise ValueError(f"min_scale must be a number > 0; got {min_scale!r}")
        self.detector = detector
        self.normalizer_halflife = normalizer_halflife
        self.min_scale = float(min_scale)
        self.model = detector.model_
        self.n_channels = detector.n_channels_
        self.stream_ids: list = []
        self._rows_of: dict = {}
        self._numpy_step = NumpyForecasterStep(self.model) if supports_numpy_step(self.model) else None
        self._torch_step = TorchBlockStep(self.model) if supports_torch_step(self.model) else None
        # constants of the one-point path, read once
        self._center0, self._scale0 = float(detector.center_[0]), float(detector.scale_[0])
        self._half = np.float32(0.5 / self.n_channels)
        # the one-channel shortcut of score_one / learn_one (a plain float, a stream seen, no timestamp)
        self._scalar_path = self.n_channels == 1 and self._numpy_step is not None
        self._u_one = np.zeros(1, dtype=np.float32)
        d, size = self.n_channels, self.model.layer.state_size
        self.state = np.zeros((0, size), dtype=np.float32)
        self.forecast_mean = np.zeros((0, d), dtype=np.float32)
        self.forecast_var = np.ones((0, d), dtype=np.float32)
        self.norm_mean = np.zeros((0, d))
        self.norm_var = np.zeros((0, d))
        self.count = np.zeros(0, dtype=np.int64)
        self.last_time = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------ streams
    def _rows(self, streams: Sequence[Hashable]) -> np.ndarray:
        """Row of each stream id, allocating fresh state for ids not seen yet."""
        rows = np.empty(len(streams), dtype=np.int64)
        new = []
        for i, sid in enumerate(streams):
            row = self._rows_of.get(sid)
            if row is None:
                if isinstance(sid, bool) or not isinstance(sid, (str, int, np.integer)):
                    raise TypeError(f"stream ids must be str or int; got {sid!r}")
                sid = sid if isinstance(sid, str) else int(sid)
                row = self._rows_of[sid] = len(self.stream_ids)
                self.stream_ids.append(sid)
                new.append(row)
            rows[i] = row
        if len(set(rows.tolist())) != len(rows):
            raise ValueError(f"streams must not repeat an id within one call; got {list(streams)}")
        if new:
            self._grow(len(new))
        return rows

    def _grow(self, n: int) -> None:
        d = self.n_channels
        self.state = np.concatenate([self.state, np.zeros((n, self.state.shape[1]), dtype=np.float32)])
        self.forecast_mean = np.concatenate([self.forecast_mean, np.zeros((n, d), dtype=np.float32)])
        self.forecast_var = np.concatenate([self.forecast_var, np.ones((n, d), dtype=np.float32)])
        self.norm_mean = np.concatenate([self.norm_mean, np.tile(self.detector.center_, (n, 1))])
        self.norm_var = np.concatenate([self.norm_var, np.tile(self.detector.scale_ ** 2, (n, 1))])
        self.count = np.concatenate([self.count, np.zeros(n, dtype=np.int64)])
        self.last_time = np.concatenate([self.last_time, np.full(n, NO_TIME, dtype=np.int64)])

    def _streams(self, streams, n: int) -> list:
        if streams is None:
            if n != 1:
                raise ValueError(f"streams must name the {n} streams of a batch; got None")
            return [0]
        if isinstance(streams, (str, int, np.integer)):
            streams = [streams]
        streams = list(streams)
        if len(streams) != n:
            raise ValueError(f"streams has {len(streams)} ids but the batch has {n} streams")
        return streams

    def _point(self, x) -> np.ndarray:
        """One point (a number, a sequence of n_channels numbers or a dict) as an array (1, d)."""
        if (type(x) is float or isinstance(x, (int, np.floating, np.integer)) and not isinstance(x, bool)) \
                and self.n_channels == 1:
            if not math.isfinite(x):
                raise ValueError(f"x must be finite; got {x} (NaN and inf are rejected: drop or fill them first)")
            return np.array([[x]], dtype=np.float64)
        if isinstance(x, dict):
            names = getattr(self.detector, "feature_names_", None)
            x = [x[k] for k in names] if names is not None and set(names) <= set(x) else list(x.values())
        values = as_series(np.atleast_1d(np.asarray(x)), "x").values.reshape(1, -1)
        if values.shape[1] != self.n_channels:
            raise ValueError(f"x has {values.shape[1]} channel(s) but the detector was fitted on {self.n_channels}")
        return values

    def _block(self, X, name: str) -> np.ndarray:
        """A (T, B, d) float64 block from ``X`` of shape (T, B, d), or (T, B) when d == 1."""
        array = np.asarray(X)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"{name} must hold numbers; got dtype {array.dtype}")
        if array.ndim == 2 and self.n_channels == 1:
            array = array[..., None]
        if array.ndim != 3 or array.shape[2] != self.n_channels or 0 in array.shape:
            raise ValueError(f"{name} must have shape (T, n_streams, {self.n_channels}) with T, n_streams >= 1"
                             f"{' (or (T, n_streams))' if self.n_channels == 1 else ''}; got {array.shape}")
        values = array.astype(np.float64)
        check_finite(values.reshape(-1, self.n_channels), name)
        return values

    @staticmethod
    def _times(timestamps, shape) -> np.ndarray:
        """``timestamps`` of shape (T, B) as int64 nanoseconds."""
        stamps = np.asarray(timestamps)
        if stamps.dtype != np.int64:
            stamps = np.asarray(pd.to_datetime(stamps.ravel()).as_unit("ns").asi8)
        if stamps.size != shape[0] * shape[1]:
            raise ValueError(f"timestamps must have shape (T, n_streams) = {tuple(shape)}; got {stamps.shape}")
        return stamps.reshape(shape)

    def _check_times(self, rows: np.ndarray, times: np.ndarray | None) -> None:
        """``times`` (T, B) int64 ns must increase along T and start after each stream's last one."""
        if times is None:
            return
        previous = np.concatenate([self.last_time[rows][None], times[:-1]])
        bad = times <= previous
        if bad.any():
            t, b = np.argwhere(bad)[0]
            raise ValueError(f"timestamps must strictly increase per stream; stream {self.stream_ids[rows[b]]!r} "
                             f"got {pd.Timestamp(times[t, b])} after {pd.Timestamp(previous[t, b])}")

    # ------------------------------------------------------------ the step
    def _normalized(self, values: np.ndarray, rows: np.ndarray, update: bool) -> np.ndarray:
        """Normalise ``values`` (T, B, d) with each stream's statistics *before* each point."""
        det = self.detector
        if self.normalizer_halflife is None:
            return (values - det.center_) / det.scale_
        alpha = halflife_to_alpha(self.normalizer_halflife)
        means, variances, mean, var = ew_mean_var(values, self.norm_mean[rows], self.norm_var[rows], alpha)
        if update:
            self.norm_mean[rows], self.norm_var[rows] = mean, var
        return (values - means) / np.maximum(np.sqrt(variances), self.min_scale * det.scale_)

    def _advance(self, values: np.ndarray, rows: np.ndarray, learn: bool) -> np.ndarray:
        """Surprise of each point of ``values`` (T, B, d) for streams ``rows``; with ``learn`` the
        streams advance past the block (one batched recurrent step per row)."""
        T, B = values.shape[:2]
        u = self._normalized(values, rows, update=learn).astype(np.float32)
        prev_mean, prev_var = self.forecast_mean[rows][None], self.forecast_var[rows][None]
        if learn:
            state = self.state[rows]
            if self._numpy_step is not None and B <= NUMPY_MAX_STREAMS:
                mean, var, state = self._numpy_step.run(u, state)
            else:
                run = self._torch_step.run if self._torch_step is not None else partial(fast_forward, self.model)
                mean, var, state = (a.numpy() for a in run(torch.from_numpy(u), torch.from_numpy(state)))
            prev_mean = np.concatenate([prev_mean, mean[:-1]])
            prev_var = np.concatenate([prev_var, var[:-1]])
        diff = u - prev_mean
        scores = ((diff * diff / prev_var).sum(-1) * np.float32(0.5 / self.n_channels)).astype(np.float64)
        seen = self.count[rows][None, :] + np.arange(T)[:, None]
        scores[seen < self.detector.warmup] = 0.0
        if learn:
            self.state[rows] = state
            self.forecast_mean[rows], self.forecast_var[rows] = mean[-1], var[-1]
            self.count[rows] += T
        return scores

    # ------------------------------------------------------------ one point
    # score_one / learn_one compute what _advance computes for a block of one
    # point. With one channel they do it on scalars: the same float64 / float32
    # operations in the same order, so the same numbers, without the cost of
    # NumPy calls on arrays of one element (the benchmark's one-stream test is
    # dominated by that cost). A plain finite float (or np.float64) for a stream already seen,
    # without a timestamp, takes a shortcut past the checks of _one (which it
    # would pass); anything else goes through them.
    def _one(self, x, timestamp, stream) -> tuple[np.ndarray, int, int | None]:
        """Checked point ``(1, d)``, the stream's row and the timestamp in ns (or None)."""
        values = self._point(x)
        row = self._rows_of.get(stream)
        if row is None:
            row = int(self._rows([stream])[0])
        time = None
        if timestamp is not None:
            time = timestamp_ns(timestamp)
            self._check_times(np.array([row]), np.array([[time]], dtype=np.int64))
        return values, row, time

    def _fast_row(self, x, timestamp, stream) -> int | None:
        """The stream's row when ``x`` may take the one-channel shortcut, else None."""
        if self._scalar_path and timestamp is None and (type(x) is float or type(x) is np.float64) \
                and math.isfinite(x):
            return self._rows_of.get(stream)
        return None

    def _scalar_normalized(self, value: float, row: int) -> float:
        """One-channel ``value`` normalised with the stream's statistics as they are (float64)."""
        if self.normalizer_halflife is None:
            return (value - self._center0) / self._scale0
        center = float(self.norm_mean[row, 0])
        scale = max(math.sqrt(self.norm_var[row, 0]), self.min_scale * self._scale0)
        return (value - center) / scale

    def _scalar_surprise(self, u: np.float32, row: int) -> float:
        """Surprise of one normalised one-channel point ``u`` (float32) under the stream's forecast."""
        if self.count[row] < self.detector.warmup:
            return 0.0
        diff = u - self.forecast_mean[row, 0]  # float32 scalars
        return float(diff * diff / self.forecast_var[row, 0] * self._half)

    def _point_normalized(self, values: np.ndarray, row: int) -> np.ndarray:
        """One point (1, d) normalised with the stream's statistics as they are, as float32 (1, d)."""
        if self.n_channels == 1:
            return np.array([[self._scalar_normalized(float(values[0, 0]), row)]], dtype=np.float32)
        det = self.detector
        if self.normalizer_halflife is None:
            return ((values - det.center_) / det.scale_).astype(np.float32)
        scale = np.maximum(np.sqrt(self.norm_var[row]), self.min_scale * det.scale_)
        return ((values - self.norm_mean[row]) / scale).astype(np.float32)

    def _point_surprise(self, u: np.ndarray, row: int) -> float:
        """Surprise of one normalised point ``u`` (1, d) under the stream's forecast."""
        if self.n_channels == 1:
            return self._scalar_surprise(u[0, 0], row)
        if self.count[row] < self.detector.warmup:
            return 0.0
        diff = u[0] - self.forecast_mean[row]
        return float((diff * diff / self.forecast_var[row]).sum() * self._half)

    def _update_normalizer(self, values: np.ndarray, row: int) -> None:
        """Add one point (1, d) to the stream's normaliser (the update of ``ew_mean_var``)."""
        if self.n_channels == 1:
            self._update_scalar_normalizer(float(values[0, 0]), row)
            return
        alpha = halflife_to_alpha(self.normalizer_halflife)
        delta = values[0] - self.norm_mean[row]
        self.norm_mean[row] += alpha * delta
        self.norm_var[row] = (1.0 - alpha) * (self.norm_var[row] + alpha * delta * delta)

    def _update_scalar_normalizer(self, value: float, row: int) -> None:
        alpha = halflife_to_alpha(self.normalizer_halflife)
        mean, var = float(self.norm_mean[row, 0]), float(self.norm_var[row, 0])
        delta = value - mean
        self.norm_mean[row, 0] = mean + alpha * delta
        self.norm_var[row, 0] = (1.0 - alpha) * (var + alpha * delta * delta)

    def _step_point(self, u: np.ndarray, row: int) -> None:
        """The recurrent step of one stream for its normalised point ``u (d,)`` float32, in place."""
        self._numpy_step.step_row(u, row, self.state, self.forecast_mean, self.forecast_var)
        self.count[row] += 1

    def _learn_point(self, values: np.ndarray, row: int, time: int | None, surprise: bool = True) -> float | None:
        """Advance one stream by one point; returns the point's surprise (what ``score_one`` gave),
        or None without ``surprise``."""
        if self._numpy_step is None:
            result = float(self._advance(values[None], np.array([row]), learn=True)[0, 0])
        else:
            u = self._point_normalized(values, row)
            result = self._point_surprise(u, row) if surprise else None
            if self.normalizer_halflife is not None:
                self._update_normalizer(values, row)
            self._step_point(u[0], row)
        if time is not None:
            self.last_time[row] = time
        return result

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
        values, row, _ = self._one(x, timestamp, stream)
        return self._point_surprise(self._point_normalized(values, row), row)

    def learn_one(self, x, timestamp=None, stream: Hashable = 0) -> None:
        """Advance ``stream`` by point ``x``: one recurrent step, normaliser, next forecast."""
        row = self._fast_row(x, timestamp, stream)
        if row is None:
            self._learn_point(*self._one(x, timestamp, stream), surprise=False)
            return
        x, u = float(x), self._u_one
        u[0] = self._scalar_normalized(x, row)  # rounded to float32 as np.array(..., dtype=np.float32) rounds
        if self.normalizer_halflife is not None:
            self._update_scalar_normalizer(x, row)
        self._step_point(u, row)

    def score_many(self, X, streams=None) -> np.ndarray:
        """Surprise of one point per stream, ``X`` (n_streams, n_channels) or (n_streams,); no state changes.
        Returns an array of shape (n_streams,)."""
        block = self._block(np.asarray(X)[None], "X")
        return self._advance(block, self._rows(self._streams(streams, block.shape[1])), learn=False)[0]

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
        block = self._block(X, "X")
        rows = self._rows(self._streams(streams, block.shape[1]))
        times = None if timestamps is None else self._times(timestamps, block.shape[:2])
        self._check_times(rows, times)
        scores = self._advance(block, rows, learn=True)
        if times is not None:
            self.last_time[rows] = times[-1]
        return scores

    def score(self, chunk, stream: Hashable = 0):
        """Score, then learn, each row of a chunk of one stream.

        Parameters
        ----------
        chunk : DataFrame, Series or array of shape (n_timestamps, n_channels)
            With a DatetimeIndex, timestamps must increase and follow the stream's last one.

        Returns
        -------
        surprises : array of shape (n_timestamps,), or a Series on the chunk's index
        """
        series = as_series(chunk, "chunk", n_channels=self.n_channels)
        times = None
        if isinstance(series.index, pd.DatetimeIndex):
            times = series.index.as_unit("ns").asi8.reshape(-1, 1)
        return series.wrap(self.process(series.values[:, None, :], [stream], times)[:, 0], name="surprise")

    def save(self, path) -> None:
        """Write the complete state to ``path`` (see :mod:`~sparsernn.detectors.persistence`)."""
        from .persistence import save_stream

        save_stream(self, path)

    @classmethod
    def load(cls, path) -> "StreamScorer":
        """Read a scorer written by :meth:`save`."""
        from .persistence import load_stream

        return load_stream(path, expect=cls)
