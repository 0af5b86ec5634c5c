"""Checking and converting the series that detectors and stream scorers receive.

One policy for bad input, shared by the batch detector and the streaming
scorer: NaN / inf values, a wrong rank, an empty series, non-numbers (strings,
None, objects), unsorted or duplicate timestamps and a width that differs from ``fit``
are **rejected** with a ``ValueError`` / ``TypeError`` that names the argument,
what was given and what is allowed. Nothing is skipped silently, so a rejected
input never reaches (or changes) a model's state. What is accepted is what
PyOD's time-series detectors accept (any array-like numpy reads, pandas Series /
DataFrame), numeric strings excepted (docs/river.md, "PyOD conventions").
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SeriesInput:
    """A checked series.

    Attributes
    ----------
    values : array of shape (n_timestamps, n_channels), float64
    index : pandas.Index or None
        The input's index when it was a Series / DataFrame, else None.
    columns : list or None
        A DataFrame's column labels (a Series' name as one label), else None.
    was_1d : bool
        True when the input had rank 1 (a Series or an array of shape (n,)).
    """

    values: np.ndarray
    index: pd.Index | None
    columns: list | None
    was_1d: bool

    def wrap(self, scores: np.ndarray, name: str = "score"):
        """``scores`` (n,) as a pandas Series on the input's index, or as is for array input."""
        if self.index is None:
            return scores
        return pd.Series(scores, index=self.index, name=name)


def feature_names_of(X) -> np.ndarray | None:
    """scikit-learn's ``feature_names_in_`` of ``X``: a DataFrame's column names as an object
    array when every one is a str, else None."""
    if isinstance(X, pd.DataFrame) and len(X.columns) and all(isinstance(c, str) for c in X.columns):
        return np.asarray(X.columns, dtype=object)
    return None


def check_feature_names(fitted: np.ndarray | None, X, name: str = "X") -> None:
    """Raise ``ValueError`` when ``X`` is a DataFrame whose column names differ from ``fitted``
    (the names seen at fit). Arrays, and any input to a model fitted without names, pass."""
    names = feature_names_of(X)
    if fitted is None or names is None and not isinstance(X, pd.DataFrame):
        return
    given = [] if names is None else list(names)
    if given == list(fitted):
        return
    unexpected = [c for c in (list(X.columns) if names is None else given) if c not in set(fitted)]
    missing = [c for c in fitted if c not in set(given)]
    what = []
    if unexpected:
        what.append(f"unexpected column(s) {unexpected}")
    if missing:
        what.append(f"missing column(s) {missing}")
    if not what:
        what.append(f"the columns in another order: {given}")
    raise ValueError(f"{name} has {' and '.join(what)}; the detector was fitted on columns {list(fitted)} "
                     f"(in this order)")


def _nullable_to_float(values, name: str) -> np.ndarray:
    """A pandas column / Series of a numeric (possibly nullable) dtype as float64; NA is an error."""
    if values.isna().any():
        raise ValueError(f"{name} has missing values (NA) at position {int(np.flatnonzero(values.isna())[0])}: "
                         f"drop or fill them before scoring")
    return values.to_numpy(dtype=np.float64)


def _is_numeric(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype) \
        or pd.api.types.is_bool_dtype(dtype)


def _first_non_number(values: np.ndarray):
    """Position and value of the first entry of an object array that is not a real number (bools
    count, as a bool dtype does), or None when every entry is one."""
    for i, value in enumerate(values.ravel()):
        if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, np.bool_)):
            return i, value
    return None


def _check_numeric(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == object and array.size:  # numbers in an object array (PyOD reads them too): accepted
        bad = _first_non_number(array)
        if bad is None:
            return array.astype(np.float64)
        raise TypeError(f"{name} must hold numbers (int, float or bool); got dtype object with {bad[1]!r} "
                        f"({type(bad[1]).__name__}) at flat position {bad[0]}")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers (int, float or bool); got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return array.astype(np.float64)


def _is_array_like(X) -> bool:
    """What ``numpy.asarray`` reads as an array of numbers and PyOD's time-series detectors take (a torch
    tensor, a pandas Index, ``range``, ...): objects exposing ``__array__`` / the array interface, and
    sequences other than str / bytes."""
    return (hasattr(X, "__array__") or hasattr(X, "__array_interface__")
            or isinstance(X, (Sequence, memoryview)) and not isinstance(X, (str, bytes)))


def check_finite(values: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming the first NaN / inf entry of ``values`` (n, d)."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{name} must be finite; found {values[row, col]} at row {row}, channel {col} "
                         f"(NaN and inf are rejected: drop or fill them before scoring)")


def check_timestamps(index: pd.Index, name: str, after=None) -> None:
    """Raise ``ValueError`` unless a DatetimeIndex is strictly increasing (and later than ``after``)."""
    if not isinstance(index, pd.DatetimeIndex):
        return
    stamps = index.as_unit("ns").asi8
    if index.hasnans:
        raise ValueError(f"{name} has missing timestamps (NaT) in its index")
    steps = np.diff(stamps)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0])
        what = "duplicate" if steps[i] == 0 else "unsorted"
        raise ValueError(f"{name} has {what} timestamps: {index[i]} is followed by {index[i + 1]} "
                         f"(timestamps must be strictly increasing)")
    if after is not None and len(stamps) and stamps[0] <= after:
        raise ValueError(f"{name} starts at {index[0]}, not after the last timestamp seen "
                         f"{pd.Timestamp(after)} (timestamps must be strictly increasing)")


def as_series(X, name: str = "X", n_channels: int | None = None, min_length: int = 1) -> SeriesInput:
    """Check ``X`` and return it as a :class:`SeriesInput`.

    Parameters
    ----------
    X : array of shape (n_timestamps,) or (n_timestamps, n_channels), pandas Series or DataFrame
        Or any array-like numpy reads (lists, tuples, ``range``, a CPU torch tensor, a pandas
        Index, objects with ``__array__``), as PyOD's time-series detectors take it
        (``pyod.models._ts_utils.validate_ts_input``); object arrays are accepted when every entry
        is a number. Strings are refused, even numeric ones (PyOD would parse them).
    name : str
        The argument's name, for error messages.
    n_channels : int, optional
        Required width (the width seen by ``fit``).
    min_length : int
        Fewest timestamps accepted.

    Raises
    ------
    TypeError
        For non-numeric data or an unsupported container.
    ValueError
        For a wrong rank, too few timestamps, a width other than ``n_channels``,
        NaN / inf, or unsorted / duplicate timestamps.
    """
    index = columns = None
    if isinstance(X, pd.Series):
        index, columns, was_1d = X.index, [X.name], True
        if isinstance(X.dtype, pd.api.extensions.ExtensionDtype) and _is_numeric(X.dtype):
            values = _nullable_to_float(X, name)[:, None]
        else:
            values = _check_numeric(X.to_numpy(), name)[:, None]
    elif isinstance(X, pd.DataFrame):
        index, columns, was_1d = X.index, list(X.columns), False
        bad = [c for c, dt in X.dtypes.items() if not _is_numeric(dt)
               and not (dt == object and len(X) and _first_non_number(X[c].to_numpy()) is None)]
        if bad:
            raise TypeError(f"{name} must hold numbers; columns {bad} have dtypes {[str(X[c].dtype) for c in bad]}")
        for column, dtype in X.dtypes.items():  # nullable (Int64, Float64, boolean) columns: NA is an error
            if isinstance(dtype, pd.api.extensions.ExtensionDtype):
                _nullable_to_float(X[column], f"{name} column {column!r}")
        values = _check_numeric(X.to_numpy(dtype=np.float64), name)
    elif isinstance(X, (np.ndarray, list, tuple)) or _is_array_like(X):
        try:
            array = np.asarray(X)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} could not be read as an array of numbers ({type(X).__name__}): {error}") \
                from None
        if array.ndim not in (1, 2):
            raise ValueError(f"{name} must have shape (n_timestamps,) or (n_timestamps, n_channels); "
                             f"got an array of rank {array.ndim} with shape {array.shape}")
        was_1d = array.ndim == 1
        if array.size == 0:
            raise ValueError(f"{name} must have at least {max(min_length, 1)} timestamp(s) and one channel; "
                             f"got an empty array of shape {array.shape}")
        values = _check_numeric(array, name).reshape(len(array), -1)
    else:
        raise TypeError(f"{name} must be a numpy array, pandas Series or DataFrame, or array-like (a list, a "
                        f"tensor, anything numpy.asarray reads); got {type(X).__name__}")
    if len(values) < min_length:
        raise ValueError(f"{name} must have at least {min_length} timestamp(s); got {len(values)}")
    if values.shape[1] == 0:
        raise ValueError(f"{name} must have at least one channel; got shape {values.shape}")
    if n_channels is not None and values.shape[1] != n_channels:
        raise ValueError(f"{name} has {values.shape[1]} channel(s) but the detector was fitted on "
                         f"{n_channels}")
    check_finite(values, name)
    if index is not None:
        check_timestamps(index, name)
    return SeriesInput(values, index, columns, was_1d)


def read_csv_rows(path: str | Path) -> pd.DataFrame:
    """``pd.read_csv(path)``, refusing (``ValueError`` naming the file) an empty or header-only file."""
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty (no header, no rows)") from None
    if len(frame) == 0:
        raise ValueError(f"{path} has a header but no data rows (columns: {list(frame.columns)})")
    return frame
