"""The fused backend for routed layers (DS-RNN channel router), with or without switches.

The router's choice depends on the state, so it runs inside the loop: per step the scores
of ``z = [x_t, h]``, the exact top-k of each side, the kept channels' products and the
cell. On a CPU (float32 / float64) the loops are C++ (``core/csrc/routed_forward.cpp``,
``routed_backward.cpp``): the products read only the kept channels' rows of ``W^T``
(:func:`transposed_weights`), the backward computes ``dh`` / ``dx`` at the kept channels
and accumulates each weight gradient over the kept entries only, and the GRU's derivative
factors are computed inside the step. Elsewhere the TorchScript loops of
:mod:`~sparsernn.core.fused_routed_loops` run (dense GEMMs on the masked inputs; the
factors from :mod:`~sparsernn.core.fused_factors`). Both compute what the reference
computes (tested against it).
"""
from __future__ import annotations

from typing import Optional

import torch

from .fused_factors import GATES, lstm_factors, refuse_double_backward, single_state_factors, weight_grads
from .fused_loops import scripted
from .native import native_for


class RoutedSequence(torch.autograd.Function):
    """``(y, h_T, c_T, scores, a)`` of a routed group; ``c_T`` / ``a`` empty when unused.

    Inputs: ``cell, x (T, B, I), h, c (G, B, H), alive, resets, w_ih (G, k*H, I), b_ih,
    w_hh (G, k*H, H), b_hh (G, 1, k*H), scale, bias (G, 1, W), down (G, r, W), up (G, W, r),
    k_in, k_h, gate_x (T, G, B, H), gate_w (G, 1, H)``.
    """

    @staticmethod
    def forward(ctx, cell, x, h, c, alive, resets, w_ih, b_ih, w_hh, b_hh, scale, bias, down, up, k_in, k_h,
                gate_x, gate_w, native_weights):
        ctx.native_weights = native_weights
        out = _run_forward(cell, x, h, c, alive, resets, w_ih, b_ih, w_hh, b_hh, scale, bias, down, up, k_in, k_h,
                           gate_x, gate_w, native_weights, True)
        y, h_last, c_last, scores = out[:4]
        gated = gate_x is not None
        preact = out[4] if gated else h.new_empty(0)
        saved = out[5:] if gated else out[4:]
        ctx.cell, ctx.gated, ctx.resets, ctx.keep = cell, gated, resets, (k_in, k_h)
        ctx.save_for_backward(x, alive, w_ih, w_hh, scale, down, up, gate_w, preact, scores, *saved)
        return y, h_last, c_last, scores, preact

    @staticmethod
    def backward(ctx, dy, dh, dc, ds_ext, da_ext):
        refuse_double_backward()
        x, alive, w_ih, w_hh, scale, down, up, gate_w, preact, scores, z, u, mask, *cell_saved = ctx.saved_tensors
        cell, gated, n_in = ctx.cell, ctx.gated, x.shape[2]
        h_read = z[..., n_in:]
        switch = preact if gated else None
        k_c = c_carry = c_keep = h_from_c = k_a = k_a_c = None
        native = ctx.native_weights
        if native is not None and cell == "gru":
            return _native_gru_backward(ctx, native, x, alive, scale, down, up, gate_w, switch, scores, z, u, mask,
                                        cell_saved, dy, dh, ds_ext, da_ext)
        if cell == "lstm":
            f = lstm_factors(cell_saved, h_read, switch, gate_w)
            k_x = k_h = f["k_gates"]
            carry, k_c, c_carry, c_keep, h_from_c = f["h_keep"], f["k_c"], f["c_carry"], f["c_keep"], f["h_from_c"]
            k_a, k_a_c = f["k_a_h"], f["k_a_c"]
        else:
            k_x, k_h, carry, k_a = single_state_factors(cell, cell_saved, h_read, switch, gate_w)
        extra = gate_w * da_ext if gated and gate_w is not None else None
        dc_in = (dc if cell == "lstm" else dh).contiguous()
        if native is not None:
            loops, w_ih_t, w_hh_t = native
            k_in, k_hidden = ctx.keep
            soft = torch.sigmoid(scores)  # sigmoid'(s) rounded as the reference's autograd rounds it
            dh_all, dc_all, dgx, dgh, dx_all, dh0, dc0, _, d_scale, d_bias, d_up, d_down = loops.routed_backward(
                cell, dy, dh, dc_in, ds_ext, alive, ctx.resets, k_x, k_h, None, None, None, None, carry, k_c,
                c_carry, c_keep, h_from_c, extra, soft * (1 - soft), z, u, mask, scale, w_ih_t, w_hh_t, up, down,
                k_in, k_hidden)
            d_w_ih, d_b_ih = _kept_weight_grads(loops, dgx, z, mask, 0, n_in)
            d_w_hh, d_b_hh = _kept_weight_grads(loops, dgh, z, mask, n_in, z.shape[3] - n_in)
            d_scale, d_bias = d_scale.unsqueeze(1), d_bias.unsqueeze(1)
        else:
            soft = torch.sigmoid(scores)
            k_s = z * mask * soft * (1 - soft)  # straight-through: kept value x sigmoid'(score)
            dh_all, dc_all, dgx, dgh, ds, dpre, dx_all, dh0, dc0 = scripted("routed_backward")(
                cell, dy.contiguous(), dh.contiguous(), dc_in, ds_ext.contiguous(), alive, ctx.resets,
                k_x.contiguous(), k_h.contiguous(), carry, k_c, c_carry, c_keep, h_from_c, extra, k_s,
                scale * torch.sign(z), 1 - u * u, mask, w_ih, w_hh, up, down, GATES[cell])
            kept = z * mask
            d_w_ih, d_b_ih = weight_grads(dgx, kept[..., :n_in])
            d_w_hh, d_b_hh = weight_grads(dgh, kept[..., n_in:])
            d_scale = (ds * z.abs()).sum((0, 2)).unsqueeze(1)
            d_bias = ds.sum((0, 2)).unsqueeze(1)
            d_up = weight_grads(ds, u)[0]
            d_down = weight_grads(dpre, z)[0]
        da = d_gate_w = None
        if gated:
            da = torch.addcmul(da_ext, dh_all, k_a)
            if k_a_c is not None:
                da = torch.addcmul(da, dc_all, k_a_c)
            if gate_w is not None:
                d_gate_w = (da * h_read).sum((0, 2)).unsqueeze(1)
        return (None, dx_all.sum(1), dh0, dc0 if cell == "lstm" else None, None, None, d_w_ih, d_b_ih, d_w_hh,
                d_b_hh, d_scale, d_bias, d_down, d_up, None, None, da, d_gate_w, None)


def _native_gru_backward(ctx, native, x, alive, scale, down, up, gate_w, preact, scores, z, u, mask, saved, dy, dh,
                         ds_ext, da_ext):
    """The GRU's backward on the C++ routed loop with the cell's factors computed inside the step
    (no ``(T, G, B, 3H)`` factor tensors): the gradients :meth:`RoutedSequence.backward` returns."""
    loops, w_ih_t, w_hh_t = native
    k_in, k_hidden = ctx.keep
    n_in = x.shape[2]
    rz = saved[0]
    gru_saved = rz._base if rz._base is not None and rz._base.shape[3] == 2 * rz.shape[3] else torch.cat(saved, 3)
    soft = torch.sigmoid(scores)  # sigmoid'(s) rounded as the reference's autograd rounds it
    gated = preact is not None
    _, _, dgx, dgh, dx_all, dh0, _, da, d_scale, d_bias, d_up, d_down = loops.routed_backward(
        "gru", dy, dh, dh, ds_ext, alive, ctx.resets, None, None, gru_saved, preact, gate_w,
        da_ext if gated else None, None, None, None, None, None, None, soft * (1 - soft), z, u, mask, scale,
        w_ih_t, w_hh_t, up, down, k_in, k_hidden)
    d_w_ih, d_b_ih = _kept_weight_grads(loops, dgx, z, mask, 0, n_in)
    d_w_hh, d_b_hh = _kept_weight_grads(loops, dgh, z, mask, n_in, z.shape[3] - n_in)
    d_scale, d_bias = d_scale.unsqueeze(1), d_bias.unsqueeze(1)
    d_gate_w = None
    if gated and gate_w is not None:
        d_gate_w = (da * z[..., n_in:]).sum((0, 2)).unsqueeze(1)
    return (None, dx_all.sum(1), dh0, None, None, None, d_w_ih, d_b_ih, d_w_hh, d_b_hh, d_scale, d_bias, d_down,
            d_up, None, None, da if gated else None, d_gate_w, None)


def _kept_weight_grads(loops, dgates, z, mask, offset: int, width: int):
    """``dW (G, k*H, width)``, ``db (G, 1, k*H)`` of one side's product, over the kept entries only
    (C++, channel by channel; an unrouted side keeps every entry)."""
    return tuple(loops.routed_weight_grads(dgates, z, mask, offset, width))


def transposed_weights(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_ih^T (I, k*H), W_hh^T (H, k*H))``, masked and contiguous, as the C++ routed loops read them.

    Calls without gradient (acting, streaming) keep them on the layer, so a step does not transpose
    ``W_hh``; the copy is used again only while the source tensors are the same objects with the same
    version counters. A call with gradient always transposes afresh and drops the kept copy: fused
    optimisers (``torch.optim.Adam(fused=True)``, which SB3 uses) update parameters in place
    without bumping the version counter, and every such update follows a call with gradient. (An edit
    through ``param.data`` also bypasses the counter; run a call with gradient, or
    ``layer.load_state_dict``, after one.)"""
    params, buffers = layer._parameters, layer._buffers  # not nn.Module.__getattr__: acting calls are short
    sources = (params["weight_ih"], params["weight_hh"], buffers["mask_ih"], buffers["mask_hh"])
    if torch.is_grad_enabled():
        layer.__dict__.pop("_transposed_weights", None)
    else:
        versions = tuple(t._version for t in sources)
        cached = layer.__dict__.get("_transposed_weights")
        if cached is not None and cached[1] == versions and all(a is b for a, b in zip(cached[0], sources)):
            return cached[2], cached[3]
    with torch.no_grad():
        w_ih, w_hh = layer.effective_weights()
        pair = (w_ih.t().contiguous(), w_hh.t().contiguous())
    if not torch.is_grad_enabled():
        layer.__dict__["_transposed_weights"] = (sources, tuple(t._version for t in sources), *pair)
    return pair


def _run_forward(cell, x, h, c, alive, resets, w_ih, b_ih, w_hh, b_hh, scale, bias, down, up, k_in, k_h, gate_x,
                 gate_w, native_weights, save: bool):
    """The routed loop: C++ when ``native_weights = (loops, [W_ih^T], [W_hh^T])``, else TorchScript."""
    if native_weights is not None:
        loops, w_ih_t, w_hh_t = native_weights
        return loops.routed_forward(cell, x, h, c, alive, resets, w_ih_t, b_ih, w_hh_t, b_hh, scale, bias, down, up,
                                    k_in, k_h, gate_x, gate_w, save)
    return scripted("routed_forward")(cell, x, h, c, alive, resets, w_ih.transpose(1, 2), b_ih,
                                      w_hh.transpose(1, 2), b_hh, scale, bias, down.transpose(1, 2),
                                      up.transpose(1, 2), k_in, k_h, gate_x, gate_w, save)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``, or a view for a group of one (no copy on acting calls)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def routed_group(layers, x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor], alive, resets,
                 gate_x: Optional[torch.Tensor], gate_w: Optional[torch.Tensor]):
    """Run a routed group; returns ``y, h, c (or None), scores (T, G, B, W), a (or None)``.

    Parameters are read from the modules' ``_parameters`` (``nn.Module.__getattr__`` costs about a
    microsecond a lookup, which adds up on acting and streaming steps)."""
    first = layers[0]
    params = [layer._parameters for layer in layers]
    routers = [layer._modules["router"]._parameters for layer in layers]
    b_ih = _stack([p["bias_ih"] for p in params]).unsqueeze(1)
    b_hh = _stack([p["bias_hh"] for p in params]).unsqueeze(1)
    scale = _stack([r["scale"] for r in routers]).unsqueeze(1)
    bias = _stack([r["bias"] for r in routers]).unsqueeze(1)
    down = _stack([r["down"] for r in routers])
    up = _stack([r["up"] for r in routers])
    k_in, k_h = first.keep_count_input, first.keep_count_hidden
    loops = native_for(x)
    native_weights = w_ih = w_hh = None
    if loops is not None:
        pairs = [transposed_weights(layer) for layer in layers]
        native_weights = (loops, [p[0] for p in pairs], [p[1] for p in pairs])
    grad = torch.is_grad_enabled()
    if grad or loops is None:  # the autograd function returns W's gradients; the TorchScript loop reads W
        weights = [layer.effective_weights() for layer in layers]
        w_ih = _stack([w for w, _ in weights])
        w_hh = _stack([w for _, w in weights])
    if grad:
        y, h, c_out, scores, preact = RoutedSequence.apply(first.cell, x, h, c, alive, resets, w_ih, b_ih, w_hh,
                                                           b_hh, scale, bias, down, up, k_in, k_h, gate_x, gate_w,
                                                           native_weights)
    else:
        out = _run_forward(first.cell, x, h, c, alive, resets, w_ih, b_ih, w_hh, b_hh, scale, bias, down, up, k_in,
                           k_h, gate_x, gate_w, native_weights, False)
        y, h, c_out, scores = out[:4]
        preact = out[4] if gate_x is not None else None
    return y, h, (c_out if first.cell == "lstm" else None), scores, (preact if gate_x is not None else None)
