"""Argument checks shared by the core modules: each raises a clear error that
names the argument, the value given and what is allowed."""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

import torch

#: Seeds ``torch.Generator.manual_seed`` takes: 0 .. 2**64 - 1.
SEED_MAX = 2**64 - 1


def _is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    """A real number (Python or numpy int / float), not a bool (numpy bools are not Real)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as ``int`` if it is a positive integer, else raise."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int; got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value}")
    return int(value)


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` as ``float`` if it lies in (0, 1], else raise."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a float in (0, 1]; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in (0, 1]; got {value}")
    return value


def check_unit_interval(name: str, value: object) -> float:
    """Return ``value`` as ``float`` if it lies in [0, 1], else raise."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a float in [0, 1]; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ValueError(f"{name} must be in [0, 1]; got {value}")
    return value


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as ``float`` if it is a finite number >= 0, else raise."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number >= 0; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (value >= 0.0) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def check_seed(value: object) -> int:
    """Return ``value`` as ``int`` if it is an integer seed in ``[0, SEED_MAX]``, else raise."""
    if not _is_int(value):
        raise TypeError(f"seed must be an int in [0, 2**64 - 1] or None; got {value!r} of type {type(value).__name__}")
    if not 0 <= int(value) <= SEED_MAX:
        raise ValueError(f"seed must be an int in [0, 2**64 - 1] (what torch.Generator takes); got {value}")
    return int(value)


def check_max_period(value: object) -> float:
    """Return the rhythm's ``rhythm_max_period`` as ``float`` if it is a finite number > 2, else raise."""
    if not _is_real(value):
        raise TypeError(f"rhythm_max_period must be a number > 2; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not (2.0 < value < math.inf):
        raise ValueError(f"rhythm_max_period must be a finite number > 2; got {value}")
    return value


def check_periods(value: object) -> tuple[float, ...]:
    """Return the rhythm's ``rhythm_periods`` as a tuple of floats if it is a non-empty sequence of finite
    numbers >= 2 (steps; 2 is the shortest period a per-step schedule can hold), else raise
    ``TypeError`` (not a sequence of numbers) or ``ValueError`` (empty, or a period out of range)."""
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.dim() == 1 else value
    if (isinstance(value, (str, bytes, set, frozenset, dict)) or not isinstance(value, Iterable)
            or isinstance(value, torch.Tensor)):  # a tensor here is not 1-D
        raise TypeError(f"rhythm_periods must be a sequence of numbers >= 2 (periods in steps); got {value!r} "
                        f"of type {type(value).__name__}")
    periods = list(value)
    bad = [p for p in periods if not _is_real(p)]
    if bad:
        raise TypeError(f"rhythm_periods must hold numbers (periods in steps); got {bad[0]!r} of type "
                        f"{type(bad[0]).__name__} in {periods!r}")
    if not periods:
        raise ValueError("rhythm_periods must hold at least one period; got an empty sequence")
    out = tuple(float(p) for p in periods)
    wrong = [p for p in out if not (2.0 <= p < math.inf)]  # NaN fails too
    if wrong:
        raise ValueError(f"rhythm_periods must be finite numbers >= 2 (steps; a period below 2 steps aliases "
                         f"onto a longer one); got {wrong[0]} in {list(out)}")
    return out


def check_rhythm(update_gate: object, frequencies: object, max_period: object, periods: object,
                 learn_periods: object) -> tuple:
    """The layer's rhythm options checked: ``(rhythm_frequencies, rhythm_max_period, rhythm_periods)``,
    the periods a tuple of floats or None; the first two are checked only for a rhythm gate without
    explicit periods (which replace them), ``rhythm_periods`` needs ``update_gate="rhythm"``."""
    if not isinstance(learn_periods, bool):
        raise TypeError(f"rhythm_learn_periods must be a bool; got {learn_periods!r}")
    if periods is not None:
        if update_gate != "rhythm":
            raise ValueError(f"rhythm_periods needs update_gate='rhythm'; got update_gate={update_gate!r}")
        return frequencies, max_period, check_periods(periods)
    if update_gate == "rhythm":
        return check_positive_int("rhythm_frequencies", frequencies), check_max_period(max_period), None
    return frequencies, max_period, None


def check_float_dtype(dtype: object) -> None:
    """Raise unless ``dtype`` is None or a floating-point ``torch.dtype``."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype (float16, bfloat16, float32, float64) or None; "
                        f"got {dtype!r}")


def check_episode_starts(episode_starts: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every entry of ``episode_starts`` is 0 or 1 (a bool tensor
    needs no look; otherwise one reduction and one host sync)."""
    if episode_starts.dtype == torch.bool:
        return
    if episode_starts.is_complex() or not bool(((episode_starts == 0) | (episode_starts == 1)).all()):
        bad = episode_starts[(episode_starts != 0) & (episode_starts != 1)].flatten()[:3].tolist()
        raise ValueError(f"episode_starts must hold only 0 and 1 (or be a bool tensor); got values such as {bad}")


def check_layer_inputs(layer, x, state, episode_starts) -> None:
    """Raise unless ``x (T, B, I)``, ``state (B, state_size)`` (or None) and ``episode_starts (T, B)``
    (or None) fit ``layer`` (a :class:`~sparsernn.core.SparseRecurrent`): types, shapes, dtype, device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (T, B, {layer.input_size}); got {type(x).__name__}")
    if x.dim() != 3 or x.shape[2] != layer.input_size:
        raise ValueError(f"x must have shape (T, B, {layer.input_size}) (time-major); got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have T >= 1 and B >= 1; got shape {tuple(x.shape)}")
    ref = layer.weight_hh
    if x.dtype != ref.dtype:
        raise TypeError(f"x has dtype {x.dtype} but the layer's weights are {ref.dtype}; "
                        f"cast x or call layer.to({x.dtype})")
    if x.device != ref.device:
        raise ValueError(f"x is on {x.device} but the layer is on {ref.device}")
    if state is not None:
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"state must be a torch.Tensor or None; got {type(state).__name__}")
        if tuple(state.shape) != (x.shape[1], layer.state_size):
            raise ValueError(f"state must have shape (B, state_size) = ({x.shape[1]}, {layer.state_size}); "
                             f"got {tuple(state.shape)}")
        if state.dtype != ref.dtype or state.device != ref.device:
            raise TypeError(f"state must be {ref.dtype} on {ref.device}; got {state.dtype} on {state.device}")
    if episode_starts is not None:
        if not isinstance(episode_starts, torch.Tensor):
            raise TypeError(f"episode_starts must be a torch.Tensor of shape (T, B) or None; "
                            f"got {type(episode_starts).__name__}")
        if tuple(episode_starts.shape) != tuple(x.shape[:2]):
            raise ValueError(f"episode_starts must have shape (T, B) = {tuple(x.shape[:2])}; "
                             f"got {tuple(episode_starts.shape)}")
        if episode_starts.device != ref.device:
            raise ValueError(f"episode_starts is on {episode_starts.device} but the layer is on {ref.device}")
        check_episode_starts(episode_starts)


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
