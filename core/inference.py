"""Inference of a layer followed by a Gaussian read-out, and the rule that picks its kernel.

Three inference backends compute the same numbers (within float rounding;
``tests/core/test_inference_steppers.py``):

- ``"numba"``: :class:`~sparsernn.core.infer_numba.NumbaStepper`, the whole step
  in one compiled loop (about 1.5 us per stream and step at hidden size 32);
- ``"torch"``: :class:`~sparsernn.core.infer_torch.TorchBlockStepper`, a torch
  loop over ``(B, .)`` tensors (tens of us per step, fewer per stream);
- ``"fused"``: :func:`fused_inference`, the layer's fused loop then the read-out
  (any layer, routed ones included).

:func:`choose_inference_backend` is the rule, by shape only;
:class:`InferenceStepper` applies it per call and says which ran
(:attr:`InferenceStepper.last_backend`). numba is imported lazily, by the
``"numba"`` backend only.
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
"""Blocks with at most this many streams run on ``"numba"``; larger ones on ``"torch"``.

The compiled step costs about 1.5 us per stream and step whatever the block
(hidden size 32, one thread); the torch block loop costs tens of us per step
and fewer per stream, so it is faster from about 40-60 streams on (blocks of
100 steps; later for blocks of one step)."""


def supports_steppers(layer: "SparseRecurrent") -> bool:
    """Whether the ``"numba"`` and ``"torch"`` steppers can run ``layer``: not for routed layers,
    whose step has no static weights (:func:`~sparsernn.core.step_weights.step_weights`)."""
    return layer.router is None


def choose_inference_backend(layer: "SparseRecurrent", n_streams: int) -> str:
    """The inference rule, by layer and block width (never by timing at run time).

    - a routed layer: ``"fused"`` (the steppers need static step weights);
    - else ``"numba"`` for at most :data:`NUMBA_MAX_STREAMS` streams, ``"torch"`` above.
    """
    if not supports_steppers(layer):
        return "fused"
    return "numba" if n_streams <= NUMBA_MAX_STREAMS else "torch"


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

    def backend_for(self, n_streams: int) -> str:
        """The backend a block of ``n_streams`` streams runs on (:func:`choose_inference_backend`)."""
        return choose_inference_backend(self.layer, n_streams)

    def run(self, u: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inference over ``u (T, B, I)`` from ``state (B, state_size)``, float32 arrays.

        Returns ``mean (T, B, m)``, ``var (T, B, m)`` and the final state
        ``(B, state_size)``, float32 arrays; ``state`` is not changed.
        """
        backend = self.backend_for(u.shape[1])
        if backend == "numba":
            out = self._numba.run(u, state)
        else:
            run = self._torch.run if backend == "torch" else self._fused
            out = tuple(a.numpy() for a in run(torch.from_numpy(u), torch.from_numpy(state)))
        self.last_backend = backend
        return out

    def _fused(self, u: torch.Tensor, state: torch.Tensor):
        return fused_inference(self.layer, self.readout, u, state)
