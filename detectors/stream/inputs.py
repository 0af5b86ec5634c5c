"""The stream scorer's input conversion: points, blocks, dict points and timestamps.

:class:`PointInputs` is a mixin of :class:`~sparsernn.detectors.stream.scorer.StreamScorer`
(which owns ``n_channels``, ``dict_keys`` and ``last_time``): it turns what a caller
passes into checked float64 arrays and int64 nanoseconds, and rejects bad input
with an error naming it before any state changes.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..series_input import as_series, check_finite
from .point import NO_TIME


class PointInputs:
    """Input conversion of :class:`~sparsernn.detectors.stream.scorer.StreamScorer` (see the module doc)."""

    def as_point(self, x) -> np.ndarray:
        """One point (a number, a sequence of n_channels numbers or a dict) as an array (1, d)."""
        if (type(x) is float or isinstance(x, (int, np.floating, np.integer)) and not isinstance(x, bool)) \
                and self.n_channels == 1:
            if not math.isfinite(x):
                raise ValueError(f"x must be finite; got {x} (NaN and inf are rejected: drop or fill them first)")
            return np.array([[x]], dtype=np.float64)
        if isinstance(x, dict):
            x = self._dict_values(x)
        values = as_series(np.atleast_1d(np.asarray(x)), "x").values.reshape(1, -1)
        if values.shape[1] != self.n_channels:
            raise ValueError(f"x has {values.shape[1]} channel(s) but the detector was fitted on {self.n_channels}")
        return values

    def _dict_values(self, x: dict) -> list:
        """The values of a dict point in channel order. Its keys must be the detector's column names
        (fitted on a DataFrame) or else those of the first dict point this scorer learned."""
        keys = self.dict_keys if self.dict_keys is not None else list(x)
        if set(x) != set(keys) or len(x) != len(keys):
            unknown, missing = [k for k in x if k not in set(keys)], [k for k in keys if k not in x]
            raise ValueError(f"x has unknown key(s) {unknown} and missing key(s) {missing}; a dict point must "
                             f"have exactly the keys {keys}")
        return [x[k] for k in keys]

    def _fix_keys(self, x) -> None:
        """After a dict point was learned: its keys become the keys of every later dict point."""
        if self.dict_keys is None and isinstance(x, dict):
            self.dict_keys = list(x)

    def as_block(self, X, name: str = "X") -> np.ndarray:
        """A (T, B, d) float64 block from ``X`` of shape (T, B, d), or (T, B) when d == 1."""
        array = np.asarray(X)
        if array.dtype == object or not np.issubdtype(array.dtype, np.number) \
                or np.issubdtype(array.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
        if array.ndim == 2 and self.n_channels == 1:
            array = array[..., None]
        if array.ndim != 3 or array.shape[2] != self.n_channels or 0 in array.shape:
            raise ValueError(f"{name} must have shape (T, n_streams, {self.n_channels}) with T, n_streams >= 1"
                             f"{' (or (T, n_streams))' if self.n_channels == 1 else ''}; got {array.shape}")
        values = array.astype(np.float64)
        check_finite(values.reshape(-1, self.n_channels), name)
        return values

    @staticmethod
    def as_times(timestamps, shape) -> np.ndarray:
        """``timestamps`` of shape (T, B) as int64 nanoseconds."""
        stamps = np.asarray(timestamps)
        if stamps.dtype != np.int64:
            stamps = np.asarray(pd.to_datetime(stamps.ravel()).as_unit("ns").asi8)
        if stamps.size != shape[0] * shape[1]:
            raise ValueError(f"timestamps must have shape (T, n_streams) = {tuple(shape)}; got {stamps.shape}")
        return stamps.reshape(shape)

    def _check_times(self, rows: np.ndarray, times: np.ndarray | None, names: list) -> None:
        """``times`` (T, B) int64 ns must increase along T and start after each stream's last one
        (``rows`` may include rows not registered yet, which have no last timestamp)."""
        if times is None:
            return
        last = np.full(len(rows), NO_TIME, dtype=np.int64)
        known = rows < len(self.last_time)
        last[known] = self.last_time[rows[known]]
        previous = np.concatenate([last[None], times[:-1]])
        bad = times <= previous
        if bad.any():
            t, b = np.argwhere(bad)[0]
            raise ValueError(f"timestamps must strictly increase per stream; stream {names[b]!r} "
                             f"got {pd.Timestamp(times[t, b])} after {pd.Timestamp(previous[t, b])}")
