"""The layer's options, read from :class:`~sparsernn.core.SparseRecurrent` itself.

The layer's signature and its numpydoc ``Parameters`` section are the one
place where the options are written: their names and defaults come from
``inspect.signature``, their kinds from the annotations, their choices from
core's constants (:data:`~sparsernn.core.GATES_PER_CELL`,
:data:`~sparsernn.core.UPDATE_GATES`, :data:`~sparsernn.core.BACKENDS`) and
their help from the docstring. Callers that forward options (a policy's
keyword arguments, the agent command line's flags) derive theirs from
:func:`layer_options`, so they cannot drift from the layer.
"""
from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .backends import BACKENDS
from .layer import UPDATE_GATES, SparseRecurrent
from .spec import GATES_PER_CELL
from .update_gates import UPDATE_RATE_MODES

#: Constructor arguments that are the caller's, not the layer's configuration:
#: the sizes, the seed and where the weights live.
NOT_OPTIONS = ("input_size", "hidden_size", "seed", "dtype", "device")
_CHOICES: dict[str, tuple[Any, ...]] = {"cell": tuple(GATES_PER_CELL), "update_gate": UPDATE_GATES,
                                        "update_rate_mode": UPDATE_RATE_MODES, "backend": BACKENDS}


@dataclass(frozen=True)
class LayerOption:
    """One :class:`~sparsernn.core.SparseRecurrent` option.

    Attributes
    ----------
    name : str
        The keyword argument.
    default : object
        Its default in the layer's signature.
    kind : type
        ``bool``, ``int``, ``float`` or ``str``: the type of one value (``router_keep``,
        a fraction or a pair of fractions, is ``float``).
    optional : bool
        Whether ``None`` is allowed.
    choices : tuple or None
        The allowed values, for options that name something (``None`` among
        them where it is allowed).
    help : str
        The option's entry in the layer's docstring: its type line and first sentence.
    sequence : bool
        Whether the option takes a sequence of ``kind`` values (``rhythm_periods``) rather than one.
    """

    name: str
    default: Any
    kind: type
    optional: bool
    choices: tuple[Any, ...] | None
    help: str
    sequence: bool = False


def _docstring_entries(doc: str) -> dict[str, str]:
    """``{name: "type line: first sentence"}`` from a numpydoc ``Parameters`` section."""
    if "Parameters\n    ----------\n" not in doc:  # e.g. ``python -OO`` strips docstrings
        return {}
    section = doc.split("Parameters\n    ----------\n", 1)[1]
    section = re.split(r"\n    \w+\n    -+\n", section, maxsplit=1)[0]
    entries: dict[str, str] = {}
    for block in re.split(r"\n(?=    \S)", section.strip("\n")):
        head, _, body = block.strip().partition("\n")
        names, _, type_line = head.partition(" : ")
        text = " ".join(body.split())
        sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0] if text else ""
        summary = re.sub(r":\w+:`~?[\w.]*?(\w+)`", r"\1", f"{type_line.strip()}: {sentence}".rstrip(": "))
        for name in names.split(","):
            entries[name.strip()] = summary.replace("``", "")
    return entries


def _kind(name: str, hint: Any) -> tuple[type, bool, bool]:
    """The scalar type, whether ``None`` is allowed and whether the option is a sequence of that type only,
    from a type hint such as ``float | None``, ``bool`` or ``tuple[float, ...] | None``."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    scalars = [a for a in args if typing.get_origin(a) is None]
    elements = [e for a in args if typing.get_origin(a) in (tuple, list) for e in typing.get_args(a) if e is not ...]
    for kind in (bool, int, float, str):  # bool first: it is an int too
        if kind in scalars:
            return kind, optional, False
    for kind in (int, float, str):
        if kind in elements:
            return kind, optional, True
    raise TypeError(f"option {name!r} has an annotation {hint!r} that names no bool, int, float or str")


@lru_cache(maxsize=1)
def layer_options() -> dict[str, LayerOption]:
    """Every :class:`~sparsernn.core.SparseRecurrent` option (all arguments but :data:`NOT_OPTIONS`),
    in signature order.

    Examples
    --------
    >>> options = layer_options()
    >>> options["backend"].default, options["backend"].choices
    ('auto', ('auto', 'reference', 'compiled', 'fused'))
    """
    hints = typing.get_type_hints(SparseRecurrent.__init__)
    helps = _docstring_entries(SparseRecurrent.__doc__ or "")
    options = {}
    for name, parameter in inspect.signature(SparseRecurrent.__init__).parameters.items():
        if name == "self" or name in NOT_OPTIONS:
            continue
        kind, optional, sequence = _kind(name, hints[name])
        options[name] = LayerOption(name, parameter.default, kind, optional, _CHOICES.get(name), helps.get(name, ""),
                                    sequence)
    return options


def layer_defaults() -> dict[str, Any]:
    """``{name: default}`` of :func:`layer_options`."""
    return {name: option.default for name, option in layer_options().items()}
