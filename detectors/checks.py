"""Argument checks shared by the detectors and stream wrappers.

Python and NumPy numbers are accepted alike (``np.int64`` where an int is
allowed, ``np.float32`` or an int where a float is); bools, strings and
NaN are not. Each check raises a ``TypeError`` (wrong kind) or a
``ValueError`` (out of range) naming the argument, what arrived and what is
allowed, and returns the value as a plain ``int`` / ``float``.
"""
from __future__ import annotations

import math

import numpy as np

MAX_SEED = 2 ** 63 - 2
"""Largest seed accepted (torch seeds are 64-bit; the forecaster also uses ``seed + 1``)."""


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``."""
    allowed = "an int" + (f" >= {minimum}" if minimum is not None else "") \
        + (f" and <= {maximum}" if maximum is not None else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {allowed}; got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}; got {value}")
    return value


def check_seed(name: str, value) -> int:
    """A seed: an int in ``[0, MAX_SEED]``."""
    return check_int(name, value, 0, MAX_SEED)


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval given by ``low`` / ``high`` (open where said)."""
    interval = (("(" if low_open else "[") + ("-inf" if low is None else f"{low:g}") + ", "
                + ("inf" if high is None else f"{high:g}") + (")" if high_open or high is None else "]"))
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in {interval}; got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number) or (low is not None and (number <= low if low_open else number < low)) \
            or (high is not None and (number >= high if high_open else number > high)):
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return number


def check_positive(name: str, value) -> float:
    """A finite number > 0."""
    return check_number(name, value, 0.0, low_open=True)


def check_weight(name: str, value) -> float:
    """A weight: a number in [0, 1]."""
    return check_number(name, value, 0.0, 1.0)
