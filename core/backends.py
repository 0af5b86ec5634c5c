"""Backend names, the ``auto`` rule, and dispatch."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

BACKENDS = ("auto", "reference", "compiled", "fused")

#: ``auto`` on a CPU uses ``compiled`` from this many steps per call on ...
AUTO_MIN_STEPS_CPU = 16
#: ... and only for layers that route hidden channels of at least this width.
AUTO_MIN_ROUTED_HIDDEN_CPU = 512
#: ``auto`` on a CPU uses ``fused`` while ``batch * hidden_size`` is at most this.
AUTO_MAX_FUSED_WIDTH_CPU = 4096


def choose_backend(x: torch.Tensor, layer: "SparseRecurrent") -> str:
    """The ``auto`` rule, by device and shape (never by timing at run time).

    - CUDA: ``compiled``: fused element-wise kernels; eager launches a kernel
      per operation and step.
    - CPU: ``fused`` while ``batch * hidden_size <= AUTO_MAX_FUSED_WIDTH_CPU``
      (small steps, where autograd's per-step bookkeeping is the cost: RL
      policies, detectors). Above that, ``compiled`` for a layer that routes
      hidden channels of width ``>= AUTO_MIN_ROUTED_HIDDEN_CPU`` on calls of at
      least ``AUTO_MIN_STEPS_CPU`` steps (the gathered product skips most of
      ``W_hh``), else ``reference``. On a CPU the compiled element-wise step
      costs as much as eager, so it gains nothing elsewhere
      (``docs/benchmarks.md``).
    """
    if x.device.type == "cuda":
        return "compiled"
    if x.shape[1] * layer.hidden_size <= AUTO_MAX_FUSED_WIDTH_CPU:
        return "fused"
    routes_hidden = layer.router is not None and layer.keep_count_hidden < layer.hidden_size
    if routes_hidden and layer.hidden_size >= AUTO_MIN_ROUTED_HIDDEN_CPU and x.shape[0] >= AUTO_MIN_STEPS_CPU:
        return "compiled"
    return "reference"


def run_backend(name: str, layer: "SparseRecurrent", x, h, c, time, episode_starts):
    """Run ``layer`` over ``x`` with backend ``name`` ("reference", "compiled" or "fused")."""
    if name == "reference":
        from .reference import reference_forward

        return reference_forward(layer, x, h, c, time, episode_starts)
    if name == "fused":
        from .fused import fused_forward

        return fused_forward(layer, x, h, c, time, episode_starts)
    from .compiled import compiled_forward

    return compiled_forward(layer, x, h, c, time, episode_starts)
