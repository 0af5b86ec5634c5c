"""The fused backend for routed layers (DS-RNN channel router), with or without switches.

The router's choice depends on the state, so it runs inside the loop
(:func:`~sparsernn.core.fused_routed_loops.routed_forward`): per step the scores of
``z = [x_t, h]``, the exact top-k of each side, the kept channels' products
(dense GEMMs on the masked inputs: on a CPU at RL's sizes a small dense GEMM
beats a gather) and the cell. The backward recursion
(:func:`~sparsernn.core.fused_routed_loops.routed_backward`) carries the gradient
through the kept channels, the straight-through scores and the router's
low-rank context term; every weight gradient is one GEMM over all steps.
It computes what the reference computes (tested against it).
"""
from __future__ import annotations

from typing import Optional

import torch

from .fused_factors import GATES, lstm_factors, refuse_double_backward, single_state_factors, weight_grads
from .fused_loops import scripted


class RoutedSequence(torch.autograd.Function):
    """``(y, h_T, c_T, scores, a)`` of a routed group; ``c_T`` / ``a`` empty when unused.

    Inputs: ``cell, x (T, B, I), h, c (G, B, H), alive, resets, w_ih (G, k*H, I), b_ih,
    w_hh (G, k*H, H), b_hh (G, 1, k*H), scale, bias (G, 1, W), down (G, r, W), up (G, W, r),
    k_in, k_h, gate_x (T, G, B, H), gate_w (G, 1, H)``.
    """

    @staticmethod
    def forward(ctx, cell, x, h, c, alive, resets, w_ih, b_ih, w_hh, b_hh, scale, bias, down, up, k_in, k_h,
                gate_x, gate_w):
        out = scripted("routed_forward")(cell, x, h, c, alive, resets, w_ih.transpose(1, 2), b_ih,
                                         w_hh.transpose(1, 2), b_hh, scale, bias, down.transpose(1, 2),
                                         up.transpose(1, 2), k_in, k_h, gate_x, gate_w, True)
        y, h_last, c_last, scores = out[:4]
        gated = gate_x is not None
        preact = out[4] if gated else h.new_empty(0)
        saved = out[5:] if gated else out[4:]
        ctx.cell, ctx.gated, ctx.resets = cell, gated, resets
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
        if cell == "lstm":
            f = lstm_factors(cell_saved, h_read, switch, gate_w)
            k_x = k_h = f["k_gates"]
            carry, k_c, c_carry, c_keep, h_from_c = f["h_keep"], f["k_c"], f["c_carry"], f["c_keep"], f["h_from_c"]
            k_a, k_a_c = f["k_a_h"], f["k_a_c"]
        else:
            k_x, k_h, carry, k_a = single_state_factors(cell, cell_saved, h_read, switch, gate_w)
        extra = gate_w * da_ext if gated and gate_w is not None else None
        soft = torch.sigmoid(scores)
        k_s = z * mask * soft * (1 - soft)  # straight-through: kept value x sigmoid'(score)
        dh_all, dc_all, dgx, dgh, ds, dpre, dx_all, dh0, dc0 = scripted("routed_backward")(
            cell, dy.contiguous(), dh.contiguous(), (dc if cell == "lstm" else dh).contiguous(), ds_ext.contiguous(),
            alive, ctx.resets, k_x.contiguous(), k_h.contiguous(), carry, k_c, c_carry, c_keep, h_from_c, extra,
            k_s, scale * torch.sign(z), 1 - u * u, mask, w_ih, w_hh, up, down, GATES[cell])
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
                d_b_hh, d_scale, d_bias, d_down, d_up, None, None, da, d_gate_w)


def routed_group(layers, x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor], alive, resets,
                 gate_x: Optional[torch.Tensor], gate_w: Optional[torch.Tensor]):
    """Run a routed group; returns ``y, h, c (or None), scores (T, G, B, W), a (or None)``."""
    first = layers[0]
    weights = [layer.effective_weights() for layer in layers]
    w_ih = torch.stack([w for w, _ in weights])
    w_hh = torch.stack([w for _, w in weights])
    b_ih = torch.stack([layer.bias_ih for layer in layers]).unsqueeze(1)
    b_hh = torch.stack([layer.bias_hh for layer in layers]).unsqueeze(1)
    routers = [layer.router for layer in layers]
    scale = torch.stack([r.scale for r in routers]).unsqueeze(1)
    bias = torch.stack([r.bias for r in routers]).unsqueeze(1)
    down = torch.stack([r.down for r in routers])
    up = torch.stack([r.up for r in routers])
    k_in, k_h = first.keep_count_input, first.keep_count_hidden
    if torch.is_grad_enabled():
        y, h, c_out, scores, preact = RoutedSequence.apply(first.cell, x, h, c, alive, resets, w_ih, b_ih, w_hh,
                                                           b_hh, scale, bias, down, up, k_in, k_h, gate_x, gate_w)
    else:
        out = scripted("routed_forward")(first.cell, x, h, c, alive, resets, w_ih.transpose(1, 2), b_ih,
                                         w_hh.transpose(1, 2), b_hh, scale, bias, down.transpose(1, 2),
                                         up.transpose(1, 2), k_in, k_h, gate_x, gate_w, False)
        y, h, c_out, scores = out[:4]
        preact = out[4] if gate_x is not None else None
    return y, h, (c_out if first.cell == "lstm" else None), scores, (preact if gate_x is not None else None)
