"""sparsernn.core: the shared recurrent engine (depends on torch only).

Public API: :class:`SparseRecurrent`, the a-priori specification
(:class:`LayerSpec`, :func:`solve_layer_spec`, :func:`hidden_proportion`),
the backend rule (:data:`BACKENDS`, :func:`choose_backend`), the group call
(:func:`group_forward`: several same-shaped layers reading one input, e.g. an
actor and a critic, as one batched fused loop where their backends are
``fused``; :func:`fused_group_forward` forces that loop), and the layer's
options read from its signature (:func:`layer_options`, :class:`LayerOption`).
"""
from .backends import BACKENDS, choose_backend, group_forward
from .fused import fused_group_forward
from .layer import UPDATE_GATES, SparseRecurrent
from .options import LayerOption, layer_defaults, layer_options
from .spec import GATES_PER_CELL, LayerSpec, hidden_proportion, solve_layer_spec

__all__ = ["SparseRecurrent", "LayerSpec", "solve_layer_spec", "hidden_proportion", "BACKENDS",
           "choose_backend", "GATES_PER_CELL", "UPDATE_GATES", "group_forward", "fused_group_forward",
           "LayerOption", "layer_options", "layer_defaults"]
