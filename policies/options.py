"""The recurrent-layer options a policy accepts, and their resolution.

A policy's layer is specified either directly, by ``hidden_size`` and the
block densities, or a priori, by a parameter budget and a hidden proportion
(:func:`~sparsernn.core.solve_layer_spec` solves for the rest). Every other
:class:`~sparsernn.core.SparseRecurrent` option passes through unchanged, but
for one rule of the policy's: a single ``router_keep`` fraction routes the
observation side only when it is at least as wide as the hidden state
(:func:`policy_router_keep`).
"""
from __future__ import annotations

import numbers
from typing import Any

from sparsernn.core import layer_defaults, solve_layer_spec

#: :class:`~sparsernn.core.SparseRecurrent` options that a policy forwards as given, with the
#: layer's defaults (read from its signature by :func:`~sparsernn.core.layer_options`).
LAYER_OPTIONS: dict[str, Any] = layer_defaults()


def resolve_layer_options(input_size: int, hidden_size: int | None, param_budget: int | None,
                          hidden_proportion: float | None, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Turn a policy's layer options into ``(hidden_size, SparseRecurrent kwargs)``.

    Parameters
    ----------
    input_size : int
        Width of the features the layer reads.
    hidden_size : int or None
        ``None`` is allowed only with ``param_budget``: the solver picks the
        smallest feasible size.
    param_budget, hidden_proportion : int, float or None
        Both or neither. When given, the densities are solved and must not be
        given as well.
    options : dict
        Keys of :data:`LAYER_OPTIONS`; missing keys take the defaults there.

    Returns
    -------
    hidden_size : int
    kwargs : dict
        Keyword arguments for ``SparseRecurrent(input_size, hidden_size, **kwargs)``.
    """
    unknown = sorted(set(options) - set(LAYER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown recurrent-layer option(s) {unknown}; allowed: {sorted(LAYER_OPTIONS)}")
    kwargs = {**LAYER_OPTIONS, **options}
    if (param_budget is None) != (hidden_proportion is None):
        raise ValueError(f"param_budget and hidden_proportion go together; got param_budget={param_budget!r}, "
                         f"hidden_proportion={hidden_proportion!r}")
    if param_budget is None:
        if hidden_size is None:
            raise ValueError("hidden_size=None needs param_budget and hidden_proportion to solve for it")
        return hidden_size, kwargs
    given = {k: kwargs[k] for k in ("density_ih", "density_hh") if kwargs[k] != 1.0}
    if given:
        raise ValueError(f"give either densities {given} or (param_budget, hidden_proportion) = "
                         f"({param_budget!r}, {hidden_proportion!r}), not both: the budget decides the densities")
    spec = solve_layer_spec(input_size, kwargs["cell"], param_budget, hidden_proportion, hidden_size)
    kwargs["density_ih"], kwargs["density_hh"] = spec.density_ih, spec.density_hh
    return spec.hidden_size, kwargs


def policy_router_keep(router_keep: Any, input_size: int, hidden_size: int) -> Any:
    """The ``router_keep`` a policy gives its layer: a pair as given; a single fraction ``keep`` as
    ``(1.0, keep)`` (hidden side routed, the features kept whole) when ``input_size < hidden_size``,
    else as given (both sides).

    Why (issue 12, ``docs/rl.md``, "Routing: why it learned badly, and the fix"): a policy's features
    are the observation itself, a few channels wide; keep 0.1 of CartPoleNoVel's 2 observations keeps
    one, which destroys information before the recurrence sees it (about half the dense GRU's
    return), while routing only the hidden side keeps its return. The input product is
    ``input_size / (input_size + hidden_size)`` of the routed work, so a narrow input saves little
    when routed. The budget stays exact either way: ``layer.router_keep`` and
    ``layer.statistics()["active_input_fraction"]`` show what was applied.
    """
    if isinstance(router_keep, bool) or not isinstance(router_keep, numbers.Real):
        return router_keep  # None, a pair, or a bad value for the layer to refuse
    return router_keep if input_size >= hidden_size else (1.0, router_keep)
