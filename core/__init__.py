"""sparsernn.core: the shared recurrent engine (depends on torch only).

Public API: :class:`SparseRecurrent`, the a-priori specification
(:class:`LayerSpec`, :func:`solve_layer_spec`, :func:`hidden_proportion`),
the backend rule (:data:`BACKENDS`, :func:`choose_backend`), and the fused
backend's group call (:func:`fused_group_forward`: several same-shaped
layers reading one input, e.g. an actor and a critic, as one batched loop).
"""
from .backends import BACKENDS, choose_backend
from .fused import fused_group_forward
from .layer import UPDATE_GATES, SparseRecurrent
from .spec import GATES_PER_CELL, LayerSpec, hidden_proportion, solve_layer_spec

__all__ = ["SparseRecurrent", "LayerSpec", "solve_layer_spec", "hidden_proportion", "BACKENDS",
           "choose_backend", "GATES_PER_CELL", "UPDATE_GATES", "fused_group_forward"]
