"""Per-sample weights: one layer's equations run for ``S`` samples, each with its own parameters.

:func:`per_sample_forward` runs a layer over ``x (T, S, I)`` from ``state (S, state_size)``
with stacked parameters ``{name: (S, *shape)}`` (the layer's ``named_parameters`` names, as an
online learner holds them, e.g. one forecaster per stream) and returns what the layer's
``forward`` returns, ``y (T, S, H)`` and the final state ``(S, state_size)``. It is one
autograd node (:class:`_PerSampleGRU`) with a hand-written backward: the recurrence's
gradient step by step, batched over the samples (element-wise passes and one ``bmm`` per
step), and each weight's gradient formed **once per call** as one batched product over the
steps, ``dW_s = sum_t dg_{t,s}^T [x_t | h_{t-1}]_s`` (``(S, G, T) @ (S, T, I or H)``),
instead of autograd's outer product per step and sample.

What it covers (:func:`per_sample_unsupported` says why not otherwise): the GRU cell,
without an update gate or with ``update_gate="event"`` (the switch's straight-through rule
of :func:`~sparsernn.core.cells.switch`: the gradient reaches the gate at open pairs only;
always-open neurons), static masks (``density < 1``: the weights are multiplied by the
layer's masks, so masked entries get zero gradient), no ``episode_starts``. Not covered: LSTM,
Elman, the rhythm gate, routing, and ``target_update_rate`` (no trace is recorded, so the
layer's ``aux_loss`` would not see the call; for every covered layer it is exactly zero).
The reference is ``torch.func.vmap`` of ``functional_call`` over the reference backend
(``tests/core/test_per_sample.py`` checks outputs, state and every gradient against it).

The forward computes each step as the reference backend does, one step at a time (so a call
of ``T`` steps gives the same bits as ``T`` calls of one step); only the backward differs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent

#: The parameter names a covered layer has (``gate.*`` with the event gate only).
LAYER_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
GATE_NAMES = ("gate.weight_x", "gate.weight_h", "gate.bias")


def per_sample_unsupported(layer: "SparseRecurrent") -> str | None:
    """Why :func:`per_sample_forward` does not cover ``layer`` (a sentence), or None when it does."""
    if layer.cell != "gru":
        return f"cell={layer.cell!r} (only 'gru')"
    if layer.update_gate not in (None, "event"):
        return f"update_gate={layer.update_gate!r} (only None and 'event')"
    if layer.router is not None:
        return "a routed layer (router_keep)"
    if layer.target_update_rate is not None:
        return "target_update_rate (its aux_loss needs the call's trace)"
    return None


def per_sample_forward(layer: "SparseRecurrent", params: dict[str, torch.Tensor], x: torch.Tensor,
                       state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``layer``'s equations over ``x (T, S, I)`` from ``state (S, state_size)``, sample ``s`` with
    the parameters ``params[name][s]`` (``params``: every name of ``layer.named_parameters()``,
    each ``(S, *shape)``). Returns ``y (T, S, H)`` and the final state ``(S, state_size)``, with
    gradients to ``params``, ``x`` and ``state`` as autograd would give them through
    ``vmap(functional_call(layer, ...))`` on the reference backend (up to rounding).

    Raises
    ------
    NotImplementedError
        If the layer is not covered (:func:`per_sample_unsupported`).
    ValueError
        If a parameter is missing or has the wrong shape.
    """
    reason = per_sample_unsupported(layer)
    if reason is not None:
        raise NotImplementedError(f"per_sample_forward does not cover {reason}; use vmap over the reference backend")
    names = LAYER_NAMES + (GATE_NAMES if layer.update_gate == "event" else ())
    if x.dim() != 3 or state.dim() != 2 or x.shape[1] != state.shape[0] or state.shape[1] != layer.state_size \
            or x.shape[2] != layer.input_size:
        raise ValueError(f"x must be (T, S, {layer.input_size}) and state (S, {layer.state_size}); "
                         f"got {tuple(x.shape)} and {tuple(state.shape)}")
    own = dict(layer.named_parameters())
    samples = x.shape[1]
    for name in names:
        if name not in params or tuple(params[name].shape) != (samples, *own[name].shape):
            got = None if name not in params else tuple(params[name].shape)
            raise ValueError(f"params[{name!r}] must have shape {(samples, *own[name].shape)}; got {got}")
    mask_ih = layer.mask_ih.to(x.dtype) if layer.density_ih < 1.0 else None
    mask_hh = layer.mask_hh.to(x.dtype) if layer.density_hh < 1.0 else None
    always_open = None
    if layer.update_gate == "event" and layer.gate.n_always_open:
        always_open = layer.gate.always_open
    gate = [params[name] for name in GATE_NAMES] if layer.update_gate == "event" else [None, None, None]
    y, h = _PerSampleGRU.apply(x, state, *(params[name] for name in LAYER_NAMES), *gate,
                               mask_ih, mask_hh, always_open)
    return y, h


def _open_preactivation() -> float:
    from .update_gates import OPEN_PREACTIVATION

    return OPEN_PREACTIVATION


class _PerSampleGRU(torch.autograd.Function):
    """The GRU (optionally event-gated) with per-sample weights as one autograd node.

    Forward per step, as the reference backend: ``gx = W_ih x_t + b_ih``, ``gh = W_hh h + b_hh``
    (batched over samples: ``bmm``), ``r, z = sigmoid(gx + gh)[:2H]``,
    ``n = tanh(gx_n + r gh_n)``, ``h' = n + z (h - n)``; with the event gate,
    ``a = W_x x_t + b (forced to OPEN_PREACTIVATION for always-open neurons) + w_h h`` and
    ``h_t = h'`` where ``a > 0``, else ``h``. Backward: the reverse recurrence per step, the
    per-step projection gradients kept ``(T, S, 3H)``, and the weight gradients as one ``bmm``
    each at the end."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, g_wx, g_wh, g_b, mask_ih, mask_hh, always_open):
        steps, samples, _ = x.shape
        hidden = h0.shape[1]
        w_ih_e = w_ih * mask_ih if mask_ih is not None else w_ih
        w_hh_e = w_hh * mask_hh if mask_hh is not None else w_hh
        w_ih_t, w_hh_t = w_ih_e.transpose(1, 2), w_hh_e.transpose(1, 2)  # (S, I, 3H), (S, H, 3H)
        gated = g_wx is not None
        if gated:
            g_wx_t = g_wx.transpose(1, 2)  # (S, I, H)
        hs = x.new_empty(steps + 1, samples, hidden)
        hs[0] = h0
        r_all, z_all, n_all, ghn_all = (x.new_empty(steps, samples, hidden) for _ in range(4))
        if gated:
            cand_all = x.new_empty(steps, samples, hidden)
            slope_all = x.new_empty(steps, samples, hidden)
            open_all = torch.empty(steps, samples, hidden, dtype=torch.bool, device=x.device)
        h = h0
        for t in range(steps):
            x_t = x[t].unsqueeze(1)  # (S, 1, I)
            gx = torch.bmm(x_t, w_ih_t).squeeze(1) + b_ih
            gh = torch.bmm(h.unsqueeze(1), w_hh_t).squeeze(1) + b_hh
            r, z = torch.sigmoid(gx[:, :2 * hidden] + gh[:, :2 * hidden]).chunk(2, dim=1)
            ghn = gh[:, 2 * hidden:]
            n = torch.tanh(torch.addcmul(gx[:, 2 * hidden:], r, ghn))
            cand = torch.lerp(n, h, z)
            r_all[t], z_all[t], n_all[t], ghn_all[t] = r, z, n, ghn
            if gated:
                part = torch.bmm(x_t, g_wx_t).squeeze(1) + g_b
                if always_open is not None:
                    part = torch.where(always_open, part.new_tensor(_open_preactivation()), part)
                preact = part + g_wh * h
                is_open = preact > 0
                soft = torch.sigmoid(preact)
                slope_all[t] = soft * (1 - soft)
                open_all[t], cand_all[t] = is_open, cand
                h = torch.where(is_open, cand, h)
            else:
                h = cand
            hs[t + 1] = h
        saved = [x, hs, r_all, z_all, n_all, ghn_all, w_ih_e, w_hh_e]
        if gated:
            saved += [cand_all, slope_all, open_all, g_wx, g_wh]
        ctx.save_for_backward(*saved)
        ctx.gated, ctx.mask_ih, ctx.mask_hh, ctx.always_open = gated, mask_ih, mask_hh, always_open
        return hs[1:].clone(), h.clone()

    @staticmethod
    def backward(ctx, grad_y, grad_h):
        saved = ctx.saved_tensors
        x, hs, r_all, z_all, n_all, ghn_all, w_ih_e, w_hh_e = saved[:8]
        gated = ctx.gated
        if gated:
            cand_all, slope_all, open_all, g_wx, g_wh = saved[8:]
        steps, samples, hidden = r_all.shape
        dgx_all = x.new_empty(steps, samples, 3 * hidden)  # d(gx) per step; d(gh) shares its first 2H
        dghn_all = x.new_empty(steps, samples, hidden)
        if gated:
            da_all = x.new_empty(steps, samples, hidden)
        dh = grad_h.clone() if grad_h is not None else x.new_zeros(samples, hidden)
        for t in range(steps - 1, -1, -1):
            if grad_y is not None:
                dh = dh + grad_y[t]
            h_prev = hs[t]
            r, z, n, ghn = r_all[t], z_all[t], n_all[t], ghn_all[t]
            if gated:
                is_open = open_all[t]
                dcand = torch.where(is_open, dh, torch.zeros_like(dh))
                da = dcand * slope_all[t] * (cand_all[t] - h_prev)  # straight-through, open pairs only
                da_all[t] = da
                dprev = torch.where(is_open, torch.zeros_like(dh), dh) + da * g_wh
            else:
                dcand = dh
                dprev = None
            dn = dcand * (1 - z)
            dz = dcand * (h_prev - n)
            dprev = dcand * z if dprev is None else dprev + dcand * z
            dpn = dn * (1 - n * n)
            dr = dpn * ghn
            dgx = dgx_all[t]
            torch.mul(dr, r * (1 - r), out=dgx[:, :hidden])
            torch.mul(dz, z * (1 - z), out=dgx[:, hidden:2 * hidden])
            dgx[:, 2 * hidden:] = dpn
            dghn = dpn * r
            dghn_all[t] = dghn
            dgh = torch.cat([dgx[:, :2 * hidden], dghn], 1)
            dh = dprev + torch.bmm(dgh.unsqueeze(1), w_hh_e).squeeze(1)
        dgh_all = torch.cat([dgx_all[:, :, :2 * hidden], dghn_all], 2)
        # each weight's gradient once per call: (S, G, T) @ (S, T, I or H)
        grads = [None] * 12
        need = ctx.needs_input_grad
        if need[2]:
            d = torch.bmm(dgx_all.permute(1, 2, 0), x.transpose(0, 1))
            grads[2] = d * ctx.mask_ih if ctx.mask_ih is not None else d
        if need[3]:
            d = torch.bmm(dgh_all.permute(1, 2, 0), hs[:-1].transpose(0, 1))
            grads[3] = d * ctx.mask_hh if ctx.mask_hh is not None else d
        if need[4]:
            grads[4] = dgx_all.sum(0)
        if need[5]:
            grads[5] = dgh_all.sum(0)
        dpart = None
        if gated:
            dpart = da_all
            if ctx.always_open is not None:  # their W_x x + b is replaced by a constant
                dpart = torch.where(ctx.always_open, torch.zeros_like(da_all), da_all)
            if need[6]:
                grads[6] = torch.bmm(dpart.permute(1, 2, 0), x.transpose(0, 1))
            if need[7]:
                grads[7] = (da_all * hs[:-1]).sum(0)
            if need[8]:
                grads[8] = dpart.sum(0)
        if need[0]:
            dx = torch.bmm(dgx_all.transpose(0, 1), w_ih_e)  # (S, T, I)
            if gated:
                dx = dx + torch.bmm(dpart.transpose(0, 1), g_wx)
            grads[0] = dx.transpose(0, 1)
        if need[1]:
            grads[1] = dh
        return tuple(grads)
