"""The stream scorer's one-point path (``score_one`` / ``learn_one`` of one stream, one point).

:class:`OnePointPath` is a mixin of :class:`~sparsernn.detectors.stream.scorer.StreamScorer`
(which owns the per-stream arrays it reads and writes): the same mathematics as the
block path (``StreamScorer._advance``) for a block of one point, with the scalar
shortcuts that keep a single stream fast. It also holds the timestamp conversion.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..normalization import ew_step, halflife_to_alpha, online_scale, standardize
from ..surprise import surprise

NO_TIME = np.iinfo(np.int64).min
"""Last-timestamp value of a stream that has not seen a timestamp."""


def timestamp_ns(timestamp) -> int:
    """A timestamp (pandas / numpy / datetime / str, or an int of nanoseconds) as int64 nanoseconds."""
    if isinstance(timestamp, (int, np.integer)) and not isinstance(timestamp, (bool, np.bool_)):
        if not NO_TIME < timestamp < 2 ** 63:
            raise ValueError(f"timestamp as an int of nanoseconds must fit in int64 (above {NO_TIME}); "
                             f"got {timestamp}")
        return int(timestamp)
    try:
        return int(pd.Timestamp(timestamp).as_unit("ns").value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"timestamp must be a datetime-like or an int of nanoseconds; got {timestamp!r}") from error


class OnePointPath:
    """The one-point path of :class:`~sparsernn.detectors.stream.scorer.StreamScorer` (see the module doc)."""

    # ------------------------------------------------------------ one point
    # score_one / learn_one compute what _advance computes for a block of one
    # point, with the same functions (normalization.standardize / online_scale /
    # ew_step, surprise.surprise). With one channel they call them on scalars:
    # the same float64 / float32 operations in the same order, so the same
    # numbers, without the cost of NumPy calls on arrays of one element (the
    # benchmark's one-stream test is dominated by that cost). A plain finite float (or np.float64) for a stream already seen,
    # without a timestamp, takes a shortcut past the checks of _one (which it
    # would pass); anything else goes through them.
    def _one(self, x, timestamp, stream) -> tuple[np.ndarray, int, int | None]:
        """Checked point ``(1, d)``, the stream's row and the timestamp in ns (or None); registers
        a new stream only once everything is checked."""
        values = self.as_point(x)
        row = self._rows_of.get(stream)
        new = []
        if row is None or isinstance(stream, (bool, np.bool_)):
            rows, new = self.resolve_streams([stream])
            row = int(rows[0])
        time = None
        if timestamp is not None:
            time = timestamp_ns(timestamp)
            self._check_times(np.array([row]), np.array([[time]], dtype=np.int64), [stream])
        if new:
            self._register(new)
        return values, row, time

    def _fast_row(self, x, timestamp, stream) -> int | None:
        """The stream's row when ``x`` may take the one-channel shortcut, else None."""
        if self._scalar_path and timestamp is None and (type(x) is float or type(x) is np.float64) \
                and math.isfinite(x) and type(stream) is not bool:
            return self._rows_of.get(stream)
        return None

    def _scalar_normalized(self, value: float, row: int) -> float:
        """One-channel ``value`` normalised with the stream's statistics as they are (float64)."""
        if self.normalizer_halflife is None:
            return standardize(value, self._center0, self._scale0)
        return standardize(value, float(self.norm_mean[row, 0]),
                           online_scale(float(self.norm_var[row, 0]), self.min_scale * self._scale0))

    def _scalar_surprise(self, u: np.float32, row: int) -> float:
        """Surprise of one normalised one-channel point ``u`` (float32) under the stream's forecast."""
        if self.count[row] < self.detector.warmup:
            return 0.0
        return float(surprise(u, self.forecast_mean[row, 0], self.forecast_var[row, 0], self._half))

    def _point_normalized(self, values: np.ndarray, row: int) -> np.ndarray:
        """One point (1, d) normalised with the stream's statistics as they are, as float32 (1, d)."""
        if self.n_channels == 1:
            return np.array([[self._scalar_normalized(float(values[0, 0]), row)]], dtype=np.float32)
        det = self.detector
        if self.normalizer_halflife is None:
            return standardize(values, det.center_, det.scale_).astype(np.float32)
        scale = online_scale(self.norm_var[row], self.min_scale * det.scale_)
        return standardize(values, self.norm_mean[row], scale).astype(np.float32)

    def _point_surprise(self, u: np.ndarray, row: int) -> float:
        """Surprise of one normalised point ``u`` (1, d) under the stream's forecast."""
        if self.n_channels == 1:
            return self._scalar_surprise(u[0, 0], row)
        if self.count[row] < self.detector.warmup:
            return 0.0
        return float(surprise(u[0], self.forecast_mean[row], self.forecast_var[row], self._half))

    def _update_normalizer(self, values: np.ndarray, row: int) -> None:
        """Add one point (1, d) to the stream's normaliser (the update of ``ew_mean_var``)."""
        if self.n_channels == 1:
            self._update_scalar_normalizer(float(values[0, 0]), row)
            return
        alpha = halflife_to_alpha(self.normalizer_halflife)
        with np.errstate(over="ignore"):
            self.norm_mean[row], self.norm_var[row] = ew_step(values[0], self.norm_mean[row], self.norm_var[row],
                                                              alpha, self.min_scale * self.detector.scale_)

    def _update_scalar_normalizer(self, value: float, row: int) -> None:
        """:meth:`_update_normalizer` of one channel, on floats."""
        self.norm_mean[row, 0], self.norm_var[row, 0] = ew_step(
            value, float(self.norm_mean[row, 0]), float(self.norm_var[row, 0]),
            halflife_to_alpha(self.normalizer_halflife), self.min_scale * self._scale0)

    def _step_point(self, u: np.ndarray, row: int) -> None:
        """The recurrent step of one stream for its normalised point ``u (d,)`` float32, in place."""
        self._step_row(u, row, self.state, self.forecast_mean, self.forecast_var)
        self.count[row] += 1

    def _learn_point(self, values: np.ndarray, row: int, time: int | None, surprise: bool = True) -> float | None:
        """Advance one stream by one point; returns the point's surprise (what ``score_one`` gave),
        or None without ``surprise``."""
        if self._step_row is None:
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
