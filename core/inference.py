"""Inference of a layer followed by a Gaussian read-out, and the rule that picks its kernel.

Three inference backends compute the same numbers (within float rounding;
``tests/core/test_inference_steppers.py``):

- ``"numba"``: :class:`~sparsernn.core.infer_numba.NumbaStepper`, the whole step
  in one compiled loop over the streams (about 1.5 us per stream and step at
  hidden size 32 without an update gate); for a gated layer the kernels of
  :mod:`~sparsernn.core.infer_skip` (one stream at a time) and, for blocks of
  many streams, :mod:`~sparsernn.core.infer_skip_nm` (neuron-major), which
  compute the switch first and then the open neurons only, so their cost
  follows the share of open neurons;
- ``"torch"``: :class:`~sparsernn.core.infer_torch.TorchBlockStepper`, a torch
  loop over ``(B, .)`` tensors (tens of us per step, fewer per stream), every
  neuron computed;
- ``"fused"``: :func:`fused_inference`, the layer's fused loop then the read-out
  (any layer, routed ones included).

:func:`choose_inference_backend` is the rule, by shape and, for a gated layer's
large blocks, by the share of neurons its switch opens on the block's first row
(data, not timing); :class:`InferenceStepper` applies it per call and says which
ran (:attr:`InferenceStepper.last_backend`). numba is imported lazily, by the
steppers only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .fused import fused_group_forward
from .step_weights import GaussianReadout, step_weights

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

INFERENCE_BACKENDS = ("numba", "torch", "fused")

NUMBA_MAX_STREAMS = 32
"""Blocks with at most this many streams run on ``"numba"``; larger ones on ``"torch"``, except for
gated layers whose switch opens few neurons (:data:`SKIP_MAX_OPEN_SHARE`).

The compiled step costs about 1.5 us per stream and step whatever the block
(hidden size 32, one thread); the torch block loop costs tens of us per step
and fewer per stream, so it is faster from about 40-60 streams on (blocks of
100 steps; later for blocks of one step)."""

SKIP_MAX_OPEN_SHARE = ((64, 0.35), (None, 0.4))
"""``(hidden sizes below, share)``: a gated layer's block of more than :data:`NUMBA_MAX_STREAMS`
streams runs on ``"numba"`` (the neuron-major kernel of :mod:`~sparsernn.core.infer_skip_nm`, which
skips closed neurons) when the share of open (stream, neuron) pairs on its first row is at most
``share``, else on ``"torch"`` (which computes every neuron in GEMMs over the block). The neuron-major
kernel's cost grows with the open share and the torch loop's does not; they cross at an open share of
about 0.35-0.5 at hidden size 32 and 0.25-0.5 at 128 (``scripts/profile_stream_kernel.py`` at initial
rates 0.1-1.0; ``docs/benchmarks_selective.md``, "Selective update (issue 13): streaming"). With the
per-stream kernel (:mod:`~sparsernn.core.infer_skip`) the shares were 0.1 below hidden size 64 and 0.3
from 64 on."""


def supports_steppers(layer: "SparseRecurrent") -> bool:
    """Whether the ``"numba"`` and ``"torch"`` steppers can run ``layer``: not for routed layers,
    whose step has no static weights (:func:`~sparsernn.core.step_weights.step_weights`)."""
    return layer.router is None


def skip_max_open_share(hidden_size: int) -> float:
    """The largest open share at which a large block of a gated layer runs on ``"numba"``
    (:data:`SKIP_MAX_OPEN_SHARE`)."""
    for below, share in SKIP_MAX_OPEN_SHARE:
        if below is None or hidden_size < below:
            return share
    raise AssertionError("SKIP_MAX_OPEN_SHARE ends with (None, share)")  # pragma: no cover


def choose_inference_backend(layer: "SparseRecurrent", n_streams: int, open_share: float | None = None) -> str:
    """The inference rule, by layer, block width and open share (never by timing at run time).

    - a routed layer: ``"fused"`` (the steppers need static step weights);
    - at most :data:`NUMBA_MAX_STREAMS` streams: ``"numba"``;
    - more, for a layer with an update gate whose switch opens at most
      :func:`skip_max_open_share` of the (stream, neuron) pairs (``open_share``, the
      share on the block's first row; None: not known): ``"numba"``, which skips the
      closed neurons;
    - else ``"torch"``.
    """
    if not supports_steppers(layer):
        return "fused"
    if n_streams <= NUMBA_MAX_STREAMS:
        return "numba"
    if layer.update_gate is not None and open_share is not None \
            and open_share <= skip_max_open_share(layer.hidden_size):
        return "numba"
    return "torch"


@torch.inference_mode()
def fused_inference(layer: "SparseRecurrent", readout: GaussianReadout, u: torch.Tensor, state: torch.Tensor):
    """The ``"fused"`` backend: ``layer`` over ``u (T, B, I)`` from ``state (B, state_size)``, then ``readout``.

    Returns ``mean (T, B, m)``, ``var (T, B, m)`` (the read-out after each
    row) and the final state ``(B, state_size)``: the layer's own numbers.
    """
    (y, state), = fused_group_forward([layer], u, [state])
    mean, var = readout.apply(y, u)
    return mean, var, state


class InferenceStepper:
    """Inference of ``layer`` then ``readout`` on float32 arrays, on the backend the rule picks.

    Parameters
    ----------
    layer : SparseRecurrent
        For the ``"numba"`` and ``"torch"`` backends its weights are copied now
        (later changes are not seen); ``"fused"`` runs the layer itself.
    readout : GaussianReadout

    Attributes
    ----------
    last_backend : str or None
        The backend of the last :meth:`run` (:data:`INFERENCE_BACKENDS`).
    step_row : callable or None
        The one-point path of the ``"numba"`` backend
        (:attr:`~sparsernn.core.infer_numba.NumbaStepper.step_row`); None for a
        routed layer.
    """

    def __init__(self, layer: "SparseRecurrent", readout: GaussianReadout) -> None:
        if not isinstance(readout, GaussianReadout):
            raise TypeError(f"readout must be a GaussianReadout; got {type(readout).__name__}")
        self.layer, self.readout = layer, readout
        self.last_backend: str | None = None
        self._numba = self._torch = self.step_row = None
        if supports_steppers(layer):
            from .infer_numba import NumbaStepper  # numba loads only here
            from .infer_torch import TorchBlockStepper

            weights = step_weights(layer)
            self._numba, self._torch = NumbaStepper(weights, readout), TorchBlockStepper(weights, readout)
            self.step_row = self._numba.step_row

    def backend_for(self, n_streams: int, open_share: float | None = None) -> str:
        """The backend a block of ``n_streams`` streams runs on (:func:`choose_inference_backend`)."""
        return choose_inference_backend(self.layer, n_streams, open_share)

    def open_share(self, u: np.ndarray, state: np.ndarray) -> float | None:
        """The share of (stream, neuron) pairs the layer's switch opens for the points ``u (B, I)``
        from ``state (B, state_size)``; 1.0 without an update gate, None for a routed layer."""
        return None if self._numba is None else self._numba.open_share(u, state)

    def run(self, u: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inference over ``u (T, B, I)`` from ``state (B, state_size)``, float32 arrays.

        Returns ``mean (T, B, m)``, ``var (T, B, m)`` and the final state
        ``(B, state_size)``, float32 arrays; ``state`` is not changed.
        """
        n_streams, share = u.shape[1], None
        if n_streams > NUMBA_MAX_STREAMS and u.shape[0] and self.layer.update_gate is not None \
                and self._numba is not None:
            share = self.open_share(u[0], state)  # the rule's input for large blocks of a gated layer
        backend = self.backend_for(n_streams, share)
        if backend == "numba":
            out = self._numba.run(u, state)
        else:
            run = self._torch.run if backend == "torch" else self._fused
            out = tuple(a.numpy() for a in run(torch.from_numpy(u), torch.from_numpy(state)))
        self.last_backend = backend
        return out

    def _fused(self, u: torch.Tensor, state: torch.Tensor):
        return fused_inference(self.layer, self.readout, u, state)
