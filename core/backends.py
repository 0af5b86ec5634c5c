"""Backend names, the ``auto`` rule, and dispatch (one layer, or a group of layers reading one input)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .native import NATIVE_DTYPES, native_enabled

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

BACKENDS = ("auto", "reference", "compiled", "fused")

#: ``auto`` on a CPU runs a one-step call (T = 1) of an unrouted layer at least this wide on ``reference``
#: (the fused loop transposes ``W_hh`` per call, which one step does not repay).
AUTO_MIN_ONE_STEP_REFERENCE_HIDDEN_CPU = 256
#: ``auto`` on a CPU uses ``fused`` for an unrouted layer while ``batch * hidden_size`` is at most this ...
AUTO_MAX_FUSED_WIDTH_CPU = 65536
#: ... and ``hidden_size`` at most this (the range the bound was measured on; at H=1024 the fused
#: loop's small-shape GEMMs lose to ATen's: T=32, B=64 forward+backward 1087 ms vs reference 511 ms)
AUTO_MAX_FUSED_HIDDEN_CPU = 256
#: ... and for a routed layer while it is at most this. Above it, a routed layer ...
AUTO_MAX_FUSED_WIDTH_ROUTED_CPU = 4096
#: ... that routes hidden channels of at least this width ...
AUTO_MIN_ROUTED_HIDDEN_CPU = 512
#: ... uses ``compiled`` on calls of at least this many steps.
AUTO_MIN_STEPS_CPU = 16


def choose_backend(x: torch.Tensor, layer: "SparseRecurrent") -> str:
    """The ``auto`` rule: a pure function of ``x``'s device and shape and the layer's configuration
    (never of timings at run time). The layer applies it (:meth:`~sparsernn.core.SparseRecurrent.backend_for`),
    not its callers.

    - CUDA: ``compiled``: fused element-wise kernels; eager launches a kernel
      per operation and step.
    - CPU, a gated unrouted GRU, LSTM or Elman layer that the selective loops take
      (:func:`~sparsernn.core.fused_selective.selective_native`: the C++ loops are there, and the
      layer is large or configured at most ``SELECTIVE_SMALL_MAX_RATE[cell]`` open): ``fused``, whose
      selective loops compute only the open neurons' candidates (:mod:`~sparsernn.core.fused_selective`;
      ``docs/benchmarks_selective.md``, "Selective update that pays" and "LSTM and Elman").
    - CPU, another unrouted layer: ``reference`` for a one-step call (T = 1) of a layer with
      ``hidden_size >= AUTO_MIN_ONE_STEP_REFERENCE_HIDDEN_CPU`` (``scripts/bench_core.py --step``,
      B=1: H=256 fused 105 us vs reference 45 us, H=1024 10.7 ms vs 0.21 ms: the fused loop
      transposes ``W_hh`` per call); else ``fused`` while ``batch * hidden_size <=
      AUTO_MAX_FUSED_WIDTH_CPU`` and ``hidden_size <= AUTO_MAX_FUSED_HIDDEN_CPU``, else
      ``reference`` (``scripts/bench_core.py --hidden 1024 --B 64 --T 32 --backends reference fused``,
      2026-12-01: the dense GRU's forward+backward 511 ms on reference, 1087 ms fused).
    - CPU, a routed layer, with the C++ loops (float32 / float64, not disabled by
      ``SPARSERNN_NATIVE=0``): ``fused``. Its products touch only the kept channels'
      rows of ``W^T`` (``core/csrc/routed_products.h``); measured by
      ``scripts/bench_core.py --step`` (``docs/benchmarks.md``, "Routed sparsity that
      pays"): at T=32, B=64, I=64, H=1024, keep 0.1 forward+backward 4.4x the same layer
      dense (fused) and 1.7x ``nn.GRU``; one step at B=1 3.8x ``nn.GRU``; at RL's shapes
      it is the only routed kernel without per-op dispatch.
    - CPU, a routed layer, without the C++ loops: ``fused`` (its TorchScript loop) while ``batch * hidden_size <=
      AUTO_MAX_FUSED_WIDTH_ROUTED_CPU``. Above that, ``compiled`` for a layer that
      routes hidden channels of width ``>= AUTO_MIN_ROUTED_HIDDEN_CPU`` on calls of
      at least ``AUTO_MIN_STEPS_CPU`` steps (the gathered product skips most of
      ``W_hh``), else ``reference``. On a CPU the compiled element-wise step costs
      as much as eager, so it gains nothing elsewhere (``docs/benchmarks.md``).

    The fused bounds are measured at RL's shapes by ``scripts/bench_auto_rule.py``
    (forward + backward of one call with a few resets, one thread, 2-core shared VM,
    medians of 3, 2026-12-01;
    ``reference`` time / ``fused`` time): T in 8..128, B in 64..512, H in 32..256,
    dense GRU / LSTM / Elman, GRU at density 0.1, event-gated GRU, rhythm-gated
    LSTM: 0.95-5.8x, at least parity everywhere up to ``B * H = 65536`` (dense GRU
    T=32 H=64: B=64 1.4x, B=256 2.4x, B=512 1.0x; T=128 B=128 H=64 2.8x;
    T=32 B=256 H=256 1.0x; gated layers 1.1-3.9x). Beyond 65536 nothing was
    measured, so ``reference`` stays. The routed GRU (keep 0.5, TorchScript loop)
    was not reliably faster fused above ``B * H = 4096`` (0.4-1.7x), so routed
    layers keep that bound.
    """
    if x.device.type == "cuda":
        return "compiled"
    width = x.shape[1] * layer.hidden_size
    if layer.router is None and layer.update_gate is not None:
        from .fused_selective import selective_native
        if selective_native([layer], x) is not None:
            return "fused"  # the selective loops: closed neurons skip their work
    if layer.router is None:
        if x.shape[0] == 1 and layer.hidden_size >= AUTO_MIN_ONE_STEP_REFERENCE_HIDDEN_CPU:
            return "reference"
        small = width <= AUTO_MAX_FUSED_WIDTH_CPU and layer.hidden_size <= AUTO_MAX_FUSED_HIDDEN_CPU
        return "fused" if small else "reference"
    if x.dtype in NATIVE_DTYPES and native_enabled() or width <= AUTO_MAX_FUSED_WIDTH_ROUTED_CPU:
        return "fused"
    routes_hidden = layer.keep_count_hidden < layer.hidden_size
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


def group_forward(layers: list["SparseRecurrent"], x: torch.Tensor, states: list[torch.Tensor],
                  episode_starts: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run layers of one configuration (e.g. a policy's actor and critic) over the same input.

    When every layer's backend for ``x`` (:meth:`~sparsernn.core.SparseRecurrent.backend_for`:
    its ``backend``, or the ``auto`` rule's pick) is ``"fused"``, they run as one batched fused
    loop (:func:`~sparsernn.core.fused_group_forward`: one GEMM per step for all of them); else
    each runs on its own backend. Either way the results are what each
    ``layer(x, state, episode_starts)`` returns, and each layer's ``last_backend`` and
    ``last_group_size`` (``len(layers)`` when grouped, else 1) say what ran.

    Parameters
    ----------
    layers : list of SparseRecurrent
        Same cell, sizes, update gate and router.
    x : tensor of shape (T, B, input_size)
    states : list of tensors of shape (B, state_size)
        One per layer.
    episode_starts : tensor of shape (T, B) of 0/1, optional

    Returns
    -------
    list of (y, state)
        Per layer: ``y (T, B, hidden_size)`` and ``state (B, state_size)``.
    """
    from .fused import check_group, fused_group_forward

    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be a non-empty list of SparseRecurrent; got {layers!r}")
    if not isinstance(states, (list, tuple)) or len(states) != len(layers):
        raise ValueError(f"states must be a list of one state per layer ({len(layers)}); got {states!r}")
    check_group(layers)
    if all(layer.backend_for(x) == "fused" for layer in layers):
        return fused_group_forward(layers, x, states, episode_starts)
    return [layer(x, state, episode_starts) for layer, state in zip(layers, states)]
