"""Hidden proportion and the a-priori layer specification from a parameter budget.

Definitions (Hershey & Paffenroth, arXiv 2509.15057):

- ``N_ih`` = trainable (unmasked) entries of the input->hidden block ``W_ih``,
  shape ``(G*H, I)``; ``N_hh`` likewise for ``W_hh``, shape ``(G*H, H)``;
  ``G`` = gates per cell (lstm 4, gru 3, elman 1). Biases are not counted.
- **hidden proportion** ``p = N_hh / (N_ih + N_hh)``: the share of trainable
  recurrent weights that read the hidden state. ``p ≈ 0.5`` is "balanced".
- **parameter budget** ``N = N_ih + N_hh``.

Given ``(input_size, cell, N, p)`` and optionally the hidden size, the
densities follow: ``density_hh = p N / (G H H)``, ``density_ih = (1-p) N / (G H I)``.
Without a hidden size, the solver takes the smallest ``H`` at which both
densities are at most 1 (the densest layer that meets the request).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .masks import nonzero_count
from .validation import check_choice, check_positive_int

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

GATES_PER_CELL = {"lstm": 4, "gru": 3, "elman": 1}


@dataclass(frozen=True)
class LayerSpec:
    """Sizes and densities of a recurrent layer, e.g. as solved from a budget.

    Attributes
    ----------
    input_size, hidden_size : int
    cell : {"lstm", "gru", "elman"}
    density_ih, density_hh : float in (0, 1]
    """

    input_size: int
    hidden_size: int
    cell: str
    density_ih: float
    density_hh: float

    @property
    def n_ih(self) -> int:
        """Trainable entries of ``W_ih`` that a layer built from this spec has."""
        gates = GATES_PER_CELL[self.cell]
        return nonzero_count(gates * self.hidden_size * self.input_size, self.density_ih)

    @property
    def n_hh(self) -> int:
        """Trainable entries of ``W_hh`` that a layer built from this spec has."""
        gates = GATES_PER_CELL[self.cell]
        return nonzero_count(gates * self.hidden_size * self.hidden_size, self.density_hh)

    @property
    def hidden_proportion(self) -> float:
        """``n_hh / (n_ih + n_hh)``."""
        return self.n_hh / (self.n_ih + self.n_hh)

    @property
    def budget(self) -> int:
        """``n_ih + n_hh``."""
        return self.n_ih + self.n_hh

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~sparsernn.core.SparseRecurrent`."""
        return asdict(self)

    def build(self, **kwargs: Any) -> "SparseRecurrent":
        """Build the layer; ``kwargs`` add the other options (router, gate, seed...)."""
        from .layer import SparseRecurrent

        return SparseRecurrent(**self.layer_kwargs(), **kwargs)


def solve_layer_spec(
    input_size: int,
    cell: str,
    param_budget: int,
    hidden_proportion: float,
    hidden_size: int | None = None,
) -> LayerSpec:
    """Solve hidden size and densities from a parameter budget and hidden proportion.

    Parameters
    ----------
    input_size : int
    cell : {"lstm", "gru", "elman"}
    param_budget : int
        Trainable recurrent weights ``N_ih + N_hh`` (biases excluded).
    hidden_proportion : float in (0, 1)
        Target ``N_hh / (N_ih + N_hh)``.
    hidden_size : int, optional
        Fix ``H``; by default the smallest feasible ``H``.

    Returns
    -------
    LayerSpec
        Its ``budget`` equals ``param_budget`` and its ``hidden_proportion``
        equals the target up to rounding to whole weights.

    Raises
    ------
    ValueError
        Naming the constraint that fails: a density above 1 (budget too large
        for the given hidden size) or a block with fewer than one weight.

    Examples
    --------
    >>> spec = solve_layer_spec(8, "gru", param_budget=6000, hidden_proportion=0.5)
    >>> spec.hidden_size, spec.density_ih, spec.density_hh, spec.budget
    (125, 1.0, 0.064, 6000)
    >>> solve_layer_spec(8, "gru", 6000, 0.75, hidden_size=64).density_hh
    0.3662109375
    """
    check_positive_int("input_size", input_size)
    check_choice("cell", cell, list(GATES_PER_CELL))
    check_positive_int("param_budget", param_budget)
    if isinstance(hidden_proportion, bool) or not isinstance(hidden_proportion, (int, float)):
        raise TypeError(f"hidden_proportion must be a float in (0, 1); got {hidden_proportion!r}")
    if not 0.0 < float(hidden_proportion) < 1.0:
        raise ValueError(
            f"hidden_proportion must be in (0, 1) (both blocks need weights); got {hidden_proportion}"
        )
    gates = GATES_PER_CELL[cell]
    n_hh = int(round(hidden_proportion * param_budget))
    n_ih = param_budget - n_hh
    if n_hh < 1 or n_ih < 1:
        raise ValueError(
            f"param_budget={param_budget} with hidden_proportion={hidden_proportion} leaves "
            f"N_ih={n_ih}, N_hh={n_hh}: each block needs at least one weight"
        )
    if hidden_size is None:
        # Smallest H with both blocks fitting: G*H*H >= n_hh and G*H*I >= n_ih.
        hidden_size = max(math.ceil(math.sqrt(n_hh / gates)), math.ceil(n_ih / (gates * input_size)), 1)
        while gates * hidden_size * hidden_size < n_hh or gates * hidden_size * input_size < n_ih:
            hidden_size += 1
    else:
        check_positive_int("hidden_size", hidden_size)
    size_ih = gates * hidden_size * input_size
    size_hh = gates * hidden_size * hidden_size
    if n_hh > size_hh:
        raise ValueError(
            f"density_hh would be {n_hh / size_hh:.3f} > 1: N_hh={n_hh} exceeds the {size_hh} entries of "
            f"W_hh at hidden_size={hidden_size}; lower param_budget or hidden_proportion, or raise hidden_size"
        )
    if n_ih > size_ih:
        raise ValueError(
            f"density_ih would be {n_ih / size_ih:.3f} > 1: N_ih={n_ih} exceeds the {size_ih} entries of "
            f"W_ih at hidden_size={hidden_size}, input_size={input_size}; lower param_budget, raise "
            f"hidden_proportion, or raise hidden_size"
        )
    spec = LayerSpec(input_size, hidden_size, cell, n_ih / size_ih, n_hh / size_hh)
    if (spec.n_ih, spec.n_hh) != (n_ih, n_hh):  # pragma: no cover - rounding guard
        raise RuntimeError(f"internal rounding error: {spec.n_ih, spec.n_hh} != {n_ih, n_hh}")
    return spec


def hidden_proportion(layer: "SparseRecurrent") -> float:
    """``N_hh / (N_ih + N_hh)`` of a layer: the share of its trainable recurrent
    weights (masked entries and biases excluded) that read the hidden state."""
    n_ih, n_hh = layer.trainable_counts()
    return n_hh / (n_ih + n_hh)
