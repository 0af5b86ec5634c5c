"""sparsernn.core: the shared recurrent engine (depends on torch only).

Public API: :class:`SparseRecurrent`, the a-priori specification
(:class:`LayerSpec`, :func:`solve_layer_spec`, :func:`hidden_proportion`),
and the backend rule (:data:`BACKENDS`, :func:`choose_backend`).
"""
from .backends import BACKENDS, choose_backend
from .layer import UPDATE_GATES, SparseRecurrent
from .spec import GATES_PER_CELL, LayerSpec, hidden_proportion, solve_layer_spec

__all__ = ["SparseRecurrent", "LayerSpec", "solve_layer_spec", "hidden_proportion", "BACKENDS",
           "choose_backend", "GATES_PER_CELL", "UPDATE_GATES"]
