"""Argument checks shared by the core modules: each raises a clear error that
names the argument, the value given and what is allowed."""
from __future__ import annotations

import math
from typing import Iterable, Sequence


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as ``int`` if it is a positive integer, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    return int(value)


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as ``float`` if it lies in (0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in (0, 1]; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in (0, 1]; got {value}")
    return value


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as ``float`` if it is a finite number >= 0, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number >= 0; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (value >= 0.0) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def keep_pair(value: object) -> tuple[float, float] | None:
    """Normalise ``router_keep`` to ``(keep_input, keep_hidden)`` or ``None``.

    Accepts ``None``, one fraction for both sides, or a pair of fractions.
    """
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"router_keep must be a fraction in (0, 1] or a pair (keep_input, keep_hidden); got {value!r}"
            )
        return check_fraction("router_keep[0] (input)", value[0]), check_fraction("router_keep[1] (hidden)", value[1])
    keep = check_fraction("router_keep", value)
    return keep, keep


def describe(values: Iterable[object]) -> str:
    """Comma-separated ``repr`` of values, for error messages."""
    return ", ".join(repr(v) for v in values)
