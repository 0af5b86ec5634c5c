"""The compiled backend: the reference's mathematics restructured for speed.

- Input projections (``W_ih x + b_ih``, and the event gate's ``W x + b``) for
  all T steps in one GEMM each, unless the input channels are routed.
- The rhythm gate's schedule for all steps at once, evaluated once per
  distinct time index.
- Only the recurrent part is stepped: one fused step function per layer
  configuration, handed to ``torch.compile`` (Triton/CUDA on a GPU, C++ on a
  CPU). It is compiled once per configuration, dtype, device and grad mode;
  batch and sizes are dynamic, so new shapes do not recompile.
- Routed channels: the step gathers the kept columns and reduces over them
  only, ``gh = b + sum_j h[idx_j] W^T[idx_j]``, so the work scales with keep.
"""
from __future__ import annotations

import functools
import types
from typing import TYPE_CHECKING, Callable

import torch
import torch._dynamo
import torch.fx.experimental._config as fx_config

from .statistics import make_trace

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def _routed_matvec(values: torch.Tensor, index: torch.Tensor, scores: torch.Tensor, weight_t: torch.Tensor,
                   bias: torch.Tensor) -> torch.Tensor:
    """``bias + sum_j (v_j * st(s_j)) W^T[idx_j]`` over the kept channels.

    ``values``: (B, W) channel values; ``index``: (B, k) kept channels;
    ``scores``: (B, W); ``weight_t``: (W, G*H).
    """
    soft = torch.sigmoid(scores.gather(1, index))
    kept = values.gather(1, index) * (1.0 + (soft - soft.detach()))
    return bias + (kept.unsqueeze(-1) * weight_t[index]).sum(1)


def make_step(cell: str, gate: str | None, route_in: bool, route_h: bool, routed: bool,
              k_in: int, k_h: int, want_importance: bool) -> Callable:
    """Build the fused step for one configuration (before compilation).

    The step maps ``(gx, x, ev, alive, h, c, params)`` to
    ``(h, c, open_count, open_st_sum, importance_in, importance_h)``.
    """

    def step(gx, x, gate_pre, alive, h, c, w_ih_t, b_ih, w_hh_t, b_hh, gate_w_h,
             r_scale, r_bias, r_down, r_up):
        if alive is not None:
            h = h * alive
            if c is not None:
                c = c * alive
        if routed:
            z = torch.cat([x, h], dim=1)
            scores = z.abs() * r_scale + torch.tanh(z @ r_down.t()) @ r_up.t() + r_bias
            s_in, s_h = scores[:, : x.shape[1]], scores[:, x.shape[1]:]
            imp_in = torch.sigmoid(s_in).sum(0) if want_importance else None
            imp_h = torch.sigmoid(s_h).sum(0) if want_importance else None
            if route_in:
                gx = _routed_matvec(x, s_in.topk(k_in, dim=1).indices, s_in, w_ih_t, b_ih)
            else:
                soft = torch.sigmoid(s_in)
                gx = torch.addmm(b_ih, x * (1.0 + (soft - soft.detach())), w_ih_t)
            if route_h:
                gh = _routed_matvec(h, s_h.topk(k_h, dim=1).indices, s_h, w_hh_t, b_hh)
            else:
                soft = torch.sigmoid(s_h)
                gh = torch.addmm(b_hh, h * (1.0 + (soft - soft.detach())), w_hh_t)
        else:
            imp_in = imp_h = None
            gh = torch.addmm(b_hh, h, w_hh_t)
        if cell == "lstm":
            i, f, g, o = (gx + gh).chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
        elif cell == "gru":
            xr, xz, xn = gx.chunk(3, dim=1)
            hr, hz, hn = gh.chunk(3, dim=1)
            r = torch.sigmoid(xr + hr)
            zg = torch.sigmoid(xz + hz)
            h_new = (1 - zg) * torch.tanh(xn + r * hn) + zg * h
            c_new = None
        else:
            h_new, c_new = torch.tanh(gx + gh), None
        open_count = open_st = None
        if gate is not None:
            if gate == "event":
                gate_pre = gate_pre + gate_w_h * h
            is_open = gate_pre > 0
            soft = torch.sigmoid(gate_pre)
            surrogate = soft - soft.detach()
            h_new = torch.where(is_open, h_new, h) + surrogate * (h_new - h)
            if c_new is not None:
                c_new = torch.where(is_open, c_new, c) + surrogate * (c_new - c)
            open_count = is_open.sum()
            open_st = (is_open.to(h.dtype) + surrogate).sum()
        return h_new, c_new, open_count, open_st, imp_in, imp_h

    return step


def _time_indices(time0: torch.Tensor, episode_starts: torch.Tensor | None, T: int) -> torch.Tensor:
    """Time index of every step, ``(T, B)``: ``time0 + t``, restarting at 0 after a reset."""
    steps = torch.arange(T, device=time0.device, dtype=time0.dtype).unsqueeze(1)
    times = time0.unsqueeze(0) + steps
    if episode_starts is None:
        return times
    idx = torch.arange(T, device=time0.device).unsqueeze(1).expand_as(episode_starts)
    last_reset = torch.where(episode_starts.bool(), idx, torch.full_like(idx, -1)).cummax(0).values
    return torch.where(last_reset >= 0, (idx - last_reset).to(time0.dtype), times)


@functools.lru_cache(maxsize=None)
def compiled_step(config: tuple) -> Callable:
    """The ``torch.compile``-d step for ``config`` (the arguments of :func:`make_step`).

    Each configuration gets its own code object, hence its own dynamo cache:
    configurations never evict each other, so a process may build any number
    of layers without recompiling one it has seen.
    """
    step = make_step(*config)
    name = "sparsernn_step_" + "_".join(str(part) for part in config)
    code = step.__code__.replace(co_name=name)
    fn = types.FunctionType(code, step.__globals__, name, step.__defaults__, step.__closure__)
    return torch.compile(fn, dynamic=True)


def _compile_settings():
    """Trace-time settings: fail loudly rather than fall back to eager at the
    recompile limit, and do not unify sizes with equal values (per-step views
    have varying storage offsets)."""
    return (torch._dynamo.config.patch(fail_on_recompile_limit_hit=True),
            fx_config.patch(use_duck_shape=False))


def compiled_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
                     time: torch.Tensor | None, episode_starts: torch.Tensor | None, compile: bool = True):
    """Same contract as :func:`~sparsernn.core.reference.reference_forward`.

    ``compile=False`` runs the restructured step eagerly (for debugging).
    """
    T, B, _ = x.shape
    w_ih, w_hh = layer.effective_weights()
    routed = layer.router is not None
    route_in = routed and layer.keep_count_input < layer.input_size
    route_h = routed and layer.keep_count_hidden < layer.hidden_size
    w_ih_t, w_hh_t = w_ih.t(), w_hh.t()
    if route_h or route_in:  # gathered rows must be contiguous
        w_ih_t, w_hh_t = w_ih_t.contiguous(), w_hh_t.contiguous()
    gx_all = None
    if not routed:
        gx_all = torch.addmm(layer.bias_ih, x.reshape(T * B, -1), w_ih_t).view(T, B, -1)
    gate_all = gate_w_h = None
    if layer.update_gate == "event":
        gate_all = layer.gate.input_part(x)
        gate_w_h = layer.gate.weight_h
    elif layer.update_gate == "rhythm":
        times = _time_indices(time, episode_starts, T)
        unique, inverse = torch.unique(times, return_inverse=True)
        gate_all = layer.gate(unique)[inverse]
        time = times[-1] + 1
    alive_all = None
    if episode_starts is not None:
        alive_all = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)
    r = layer.router
    router_params = (r.scale, r.bias, r.down, r.up) if routed else (None, None, None, None)
    config = (layer.cell, layer.update_gate, route_in, route_h, routed, layer.keep_count_input,
              layer.keep_count_hidden, layer.router_balance_weight > 0)
    eager_step = make_step(*config)
    step = compiled_step(config) if compile else eager_step
    # A zero initial state does not require grad while later states do; run
    # that first step eagerly rather than compiling a second graph for it.
    first_eager = torch.is_grad_enabled() and not h.requires_grad
    outputs, opens, open_st, imp_in, imp_h = [], [], [], [], []
    dynamo_settings, fx_settings = _compile_settings()
    with dynamo_settings, fx_settings:
        for t in range(T):
            h, c, n_open, st_sum, i_in, i_h = (eager_step if t == 0 and first_eager else step)(
                gx_all[t] if gx_all is not None else None, x[t],
                gate_all[t] if gate_all is not None else None,
                alive_all[t] if alive_all is not None else None,
                h, c, w_ih_t, layer.bias_ih, w_hh_t, layer.bias_hh, gate_w_h, *router_params)
            outputs.append(h)
            if n_open is not None:
                opens.append(n_open)
                open_st.append(st_sum)
            if i_in is not None:
                imp_in.append(i_in)
                imp_h.append(i_h)
    trace = make_trace(opens, open_st, imp_in, imp_h, T * B * layer.hidden_size)
    return torch.stack(outputs), (h, c, time), trace
