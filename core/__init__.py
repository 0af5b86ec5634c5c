"""sparsernn.core: the shared recurrent engine (depends on torch; numba, loaded lazily, by the
``"numba"`` inference backend only).

Public API: :class:`SparseRecurrent`, the a-priori specification
(:class:`LayerSpec`, :func:`solve_layer_spec`, :func:`hidden_proportion`),
the backend rule (:data:`BACKENDS`, :func:`choose_backend`), the group call
(:func:`group_forward`: several same-shaped layers reading one input, e.g. an
actor and a critic, as one batched fused loop where their backends are
``fused``; :func:`fused_group_forward` forces that loop), and the layer's
options read from its signature (:func:`layer_options`, :class:`LayerOption`).
Inference of a layer and a Gaussian read-out: the step-weights contract
(:class:`StepWeights`, :func:`step_weights`, :class:`GaussianReadout`), the
inference rule (:func:`choose_inference_backend`) and :class:`InferenceStepper`,
which applies it; each cell's equations are in :mod:`~sparsernn.core.cells`.
"""
from .backends import BACKENDS, choose_backend, group_forward
from .fused import fused_group_forward
from .inference import (INFERENCE_BACKENDS, NUMBA_MAX_STREAMS, SKIP_MAX_OPEN_SHARE, InferenceStepper,
                        choose_inference_backend, supports_steppers)
from .layer import UPDATE_GATES, SparseRecurrent
from .options import LayerOption, layer_defaults, layer_options
from .spec import GATES_PER_CELL, LayerSpec, hidden_proportion, solve_layer_spec
from .step_weights import GATE_ORDER, GaussianReadout, StepWeights, step_weights

__all__ = ["SparseRecurrent", "LayerSpec", "solve_layer_spec", "hidden_proportion", "BACKENDS",
           "choose_backend", "GATES_PER_CELL", "UPDATE_GATES", "group_forward", "fused_group_forward",
           "LayerOption", "layer_options", "layer_defaults", "StepWeights", "step_weights",
           "GaussianReadout", "GATE_ORDER", "InferenceStepper", "choose_inference_backend", "supports_steppers",
           "INFERENCE_BACKENDS", "NUMBA_MAX_STREAMS", "SKIP_MAX_OPEN_SHARE"]
