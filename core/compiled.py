"""The compiled backend: the reference's mathematics restructured for speed.

- Input projections (``W_ih x + b_ih``, the event gate's ``W x + b``) for all
  T steps in one GEMM each, unless the input channels are routed.
- The rhythm gate's schedule for all steps at once, evaluated once per
  distinct time index.
- Only the recurrent part is stepped. Per step, the products run on the
  vendor kernels: ``addmm`` for dense blocks (MKL/oneDNN, cuBLAS), and for
  routed channels ``embedding_bag`` over the kept rows of ``W^T`` with the
  kept values as per-sample weights — ``gh[b] = sum_j v[b, j] W^T[idx[b, j]]``,
  a dense reduction over the active columns only, forward and backward.
- Everything element-wise in a step (cell non-linearities, the switch, the
  straight-through surrogates, the statistics) is one function per layer
  configuration handed to ``torch.compile``, which fuses it into one kernel
  (C++ on a CPU, Triton on a GPU), forward and backward. It is compiled once
  per configuration, dtype, device and grad mode; sizes are dynamic.
"""
from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Callable

import torch
import torch._dynamo
import torch.fx.experimental._config as fx_config
import torch.nn.functional as F

from .cells import cell_step, switch
from .fused_factors import refuse_double_backward
from .routing import straight_through_scale
from .statistics import make_trace
from .update_gates import heaviside_straight_through, rhythm_preactivations

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def make_pointwise(cell: str, gate: str | None) -> Callable:
    """The element-wise part of one step, for one configuration (before compilation): the
    reference's :func:`~sparsernn.core.cells.cell_step` and switch, traced by ``torch.compile``.

    ``(gx, gh, b_hh, h, c, gate_pre, gate_w_h) -> (h, c, open_count, open_st_sum, is_open)``
    with ``gx``, ``gh`` of shape (B, G*H); ``gh`` comes without its bias
    ``b_hh``, which is added inside the fused kernel.
    """

    def pointwise(gx, gh, b_hh, h, c, gate_pre, gate_w_h):
        h_new, c_new = cell_step(cell, gx, gh + b_hh, h, c)
        if gate is None:
            return h_new, c_new, None, None, None
        if gate == "event":
            gate_pre = gate_pre + gate_w_h * h
        is_open, surrogate = heaviside_straight_through(gate_pre)
        h_new = switch(is_open, h_new, h, surrogate)
        if c_new is not None:
            c_new = switch(is_open, c_new, c, surrogate)
        return h_new, c_new, is_open.sum(), (is_open.to(h.dtype) + surrogate).sum(), is_open

    return pointwise


@functools.lru_cache(maxsize=None)
def compiled_pointwise(config: tuple) -> Callable:
    """The ``torch.compile``-d :func:`make_pointwise` for ``config``.

    Each configuration gets its own code object, hence its own dynamo cache,
    so configurations never evict each other.
    """
    fn = make_pointwise(*config)
    name = "sparsernn_pointwise_" + "_".join(str(part) for part in config)
    code = fn.__code__.replace(co_name=name)
    fn = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return torch.compile(fn, dynamic=True)


#: Graphs one pointwise configuration may compile in a process: dtype x grad
#: mode x which inputs require grad x size-1 specialisations stays well below.
RECOMPILE_LIMIT = 64


def _compile_settings():
    """Settings active only inside our calls: fail loudly rather than fall back
    to eager at the recompile limit, and do not unify sizes with equal values
    (per-step views have varying storage offsets)."""
    return (torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=RECOMPILE_LIMIT),
            fx_config.patch(use_duck_shape=False))


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a call's outputs whose backward refuses ``create_graph=True`` with a clear
    error (:func:`~sparsernn.core.fused_factors.refuse_double_backward`): the compiled steps'
    backward is not differentiable, and torch.compile's own error names no way out."""

    @staticmethod
    def forward(ctx, *tensors):
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        refuse_double_backward("compiled")
        return grads


def first_order_only(values: dict) -> dict:
    """``values`` with each tensor that requires grad passed through :class:`_FirstOrderOnly`
    (one autograd node per call): every path from a loss into the compiled steps crosses it."""
    names = [k for k, v in values.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    if not names or not torch.is_grad_enabled():
        return values
    guarded = _FirstOrderOnly.apply(*(values[k] for k in names))
    return {**values, **dict(zip(names, guarded))}


def routed_product(values: torch.Tensor, scores: torch.Tensor, k: int, weight_t: torch.Tensor) -> torch.Tensor:
    """``sum_j v[b, idx_j] st(s[b, idx_j]) W^T[idx_j]`` over the top-k channels of each row.

    ``values``, ``scores``: (B, W); ``weight_t``: (W, G*H), contiguous. Returns (B, G*H).
    """
    index = scores.topk(k, dim=1, sorted=False).indices
    kept = values.gather(1, index) * straight_through_scale(scores.gather(1, index))
    return F.embedding_bag(index, weight_t, per_sample_weights=kept, mode="sum")


def compiled_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
                     time: torch.Tensor | None, episode_starts: torch.Tensor | None):
    """Same contract as :func:`~sparsernn.core.reference.reference_forward`."""
    T, B, _ = x.shape
    w_ih, w_hh = layer.effective_weights()
    router = layer.router
    route_in = router is not None and layer.keep_count_input < layer.input_size
    route_h = router is not None and layer.keep_count_hidden < layer.hidden_size
    w_ih_t = w_ih.t().contiguous() if route_in else w_ih.t()
    w_hh_t = w_hh.t().contiguous() if route_h else w_hh.t()
    gx_all = None
    if router is None:
        gx_all = torch.addmm(layer.bias_ih, x.reshape(T * B, -1), w_ih_t).view(T, B, -1)
    gate_all = gate_w_h = None
    if layer.update_gate == "event":
        gate_all, gate_w_h = layer.gate.input_part(x), layer.gate.weight_h
    elif layer.update_gate == "rhythm":
        gate_all, time = rhythm_preactivations(layer.gate, time, episode_starts, T)
    reset_steps: set[int] = set()
    if episode_starts is not None:
        alive_all = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)
        reset_steps = set(episode_starts.any(1).nonzero().flatten().tolist())  # one sync per call
    want_importance = router is not None and layer.router_balance_weight > 0

    config = (layer.cell, layer.update_gate)
    pointwise = compiled_pointwise(config)
    eager_pointwise = make_pointwise(*config)
    # A zero initial state does not require grad while later states do; run
    # that first step eagerly rather than compiling a second graph for it.
    first_eager = torch.is_grad_enabled() and not h.requires_grad
    # unbind, not x[t]: indexing's backward writes a zero tensor of the whole
    # sequence per step, unbind's backward stacks all step gradients once.
    xs = x.unbind(0)
    gxs = gx_all.unbind(0) if gx_all is not None else None
    gates = gate_all.unbind(0) if gate_all is not None else [None] * T
    alives = alive_all.unbind(0) if reset_steps else None
    outputs, opens, open_st, imp_in, imp_h, selection, switches = [], [], [], [], [], [], []
    dynamo_settings, fx_settings = _compile_settings()
    with dynamo_settings, fx_settings:
        for t in range(T):
            if t in reset_steps:
                h = h * alives[t]
                c = c * alives[t] if c is not None else None
            if router is None:
                gx, gh = gxs[t], torch.mm(h, w_hh_t)
            else:
                scores = router(xs[t], h)
                selection.append(torch.cat(scores, 1).detach())  # what channel_usage reduces
                if want_importance:
                    imp_in.append(torch.sigmoid(scores[0]).sum(0))
                    imp_h.append(torch.sigmoid(scores[1]).sum(0))
                if route_in:
                    gx = routed_product(xs[t], scores[0], layer.keep_count_input, w_ih_t) + layer.bias_ih
                else:
                    gx = torch.addmm(layer.bias_ih, xs[t] * straight_through_scale(scores[0]), w_ih_t)
                if route_h:
                    gh = routed_product(h, scores[1], layer.keep_count_hidden, w_hh_t)
                else:
                    gh = torch.mm(h * straight_through_scale(scores[1]), w_hh_t)
            step = eager_pointwise if (t == 0 and first_eager) else pointwise
            h, c, n_open, st_sum, is_open = step(gx, gh, layer.bias_hh, h, c, gates[t], gate_w_h)
            outputs.append(h)
            if n_open is not None:
                opens.append(n_open)
                open_st.append(st_sum)
                switches.append(is_open)  # what update_usage reduces
    trace = make_trace(opens, open_st, imp_in, imp_h, T * B * layer.hidden_size, switch=switches)
    out = first_order_only({"y": torch.stack(outputs), "h": h, "c": c, **trace})
    trace = {k: out[k] for k in trace}
    if selection:
        trace["selection"] = (selection, (layer.keep_count_input, layer.keep_count_hidden))
    return out["y"], (out["h"], out["c"], time), trace
