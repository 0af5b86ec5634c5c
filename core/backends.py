"""Backend names, the ``auto`` rule, and dispatch."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

BACKENDS = ("auto", "reference", "compiled")

#: ``auto`` on a CPU uses ``compiled`` from this many steps per call on.
AUTO_MIN_STEPS_CPU = 16


def choose_backend(x: torch.Tensor, layer: "SparseRecurrent") -> str:
    """The ``auto`` rule, by device and shape (never by timing at run time).

    - CUDA: ``compiled`` (fused kernels; per-step launches dominate otherwise).
    - CPU: ``compiled`` for sequences of at least :data:`AUTO_MIN_STEPS_CPU`
      steps (training), ``reference`` for shorter calls (acting, streaming one
      point), where the compiled step's call overhead does not pay off.
    """
    if x.device.type == "cuda":
        return "compiled"
    return "compiled" if x.shape[0] >= AUTO_MIN_STEPS_CPU else "reference"


def run_backend(name: str, layer: "SparseRecurrent", x, h, c, time, episode_starts):
    """Run ``layer`` over ``x`` with backend ``name`` ("reference" or "compiled")."""
    if name == "reference":
        from .reference import reference_forward

        return reference_forward(layer, x, h, c, time, episode_starts)
    from .compiled import compiled_forward

    return compiled_forward(layer, x, h, c, time, episode_starts)
