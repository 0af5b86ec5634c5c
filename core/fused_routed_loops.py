"""The time loops of the fused backend for routed layers (``router_keep``).

Like :mod:`~sparsernn.core.fused_loops` (same shapes and conventions; scripted by
:func:`~sparsernn.core.fused_loops.scripted`), with the router inside the loop:
per step the scores of ``[x_t, h]``, the exact top-k channels of each side, the
straight-through scales, then the cell; the backward recursion carries the
gradient through the kept channels, the scores and the router's context term.
The autograd wiring is :mod:`~sparsernn.core.fused_routed`.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from .fused_loops import _gate_preactivation, _lstm_cell


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``(G, B, W)`` float mask with exactly ``k`` ones per row: the top-k scores (equal scores:
    the lower channel index first, as in the reference)."""
    if k >= scores.shape[2]:
        return torch.ones_like(scores)
    order = torch.sort(scores, dim=2, descending=True, stable=True).indices
    return torch.zeros_like(scores).scatter(2, order[:, :, :k], 1.0)


def routed_forward(cell: str, x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor],
                   alive: Optional[torch.Tensor], resets: List[bool], w_ih_t: torch.Tensor, b_ih: torch.Tensor,
                   w_hh_t: torch.Tensor, b_hh: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                   down_t: torch.Tensor, up_t: torch.Tensor, k_in: int, k_h: int, gate_x: Optional[torch.Tensor],
                   gate_w: Optional[torch.Tensor], save: bool) -> List[torch.Tensor]:
    """The routed loop: per step, scores ``s = |z| scale + tanh(z V^T) U^T + bias`` of
    ``z = [x_t, h]``, the top ``k_in`` / ``k_h`` channels of each side kept, then the cell.

    ``x (T, B, I)`` (shared by the group), ``w_ih_t (G, I, k*H)``, ``down_t (G, W, r)``,
    ``up_t (G, r, W)``, ``scale``, ``bias`` ``(G, 1, W)``. Returns ``[y, h, c, s]`` (``c``
    empty unless LSTM; ``s (T, G, B, W)`` the scores), then ``a`` (with a gate), then with
    ``save`` ``z, u, mask`` and the cell's values (GRU ``rz, n, ghn``; LSTM ``c_read, act,
    c_candidate``; Elman ``h_candidate``).
    """
    groups, batch, hidden = h.shape[0], h.shape[1], h.shape[2]
    n_in = x.shape[2]
    xs = x.unbind(0)
    alives = alive.unbind(0) if alive is not None else []
    gates = gate_x.unbind(0) if gate_x is not None else []
    outputs, scores, preacts = [], [], []
    zs, us, masks, first, second, third = [], [], [], [], [], []
    c_state = c if c is not None else h
    for t in range(x.shape[0]):
        if alive is not None and resets[t]:
            h = h * alives[t]
            c_state = c_state * alives[t]
        z = torch.cat([xs[t].expand(groups, batch, n_in), h], 2)
        u = torch.tanh(torch.bmm(z, down_t))
        s = torch.addcmul(torch.baddbmm(bias, u, up_t), z.abs(), scale)
        mask = torch.cat([_topk_mask(s[:, :, :n_in], k_in), _topk_mask(s[:, :, n_in:], k_h)], 2)
        kept = z * mask
        gx = torch.baddbmm(b_ih, kept[:, :, :n_in], w_ih_t)
        gh = torch.baddbmm(b_hh, kept[:, :, n_in:], w_hh_t)
        if cell == "gru":
            rz = torch.sigmoid(gx[:, :, :2 * hidden] + gh[:, :, :2 * hidden])
            r, zg = rz.chunk(2, 2)
            ghn = gh[:, :, 2 * hidden:]
            n = torch.tanh(torch.addcmul(gx[:, :, 2 * hidden:], r, ghn))
            h_new = torch.addcmul(n, zg, h - n)
            c_new = c_state
            if save:
                first.append(rz)
                second.append(n)
                third.append(ghn)
        elif cell == "lstm":
            ifo, g, c_new, h_new = _lstm_cell(gx + gh, c_state, hidden)
            if save:
                first.append(c_state)
                second.append(torch.cat([ifo, g], 2))
                third.append(c_new)
        else:
            h_new = torch.tanh(gx + gh)
            c_new = c_state
            if save:
                first.append(h_new)
        if gate_x is not None:
            a = _gate_preactivation(gates[t], gate_w, h)
            is_open = a > 0
            h_new = torch.where(is_open, h_new, h)
            if cell == "lstm":
                c_new = torch.where(is_open, c_new, c_state)
            preacts.append(a)
        if save:
            zs.append(z)
            us.append(u)
            masks.append(mask)
        h, c_state = h_new, c_new
        outputs.append(h)
        scores.append(s)
    result = [torch.stack(outputs), h, c_state if cell == "lstm" else h.new_empty(0), torch.stack(scores)]
    if gate_x is not None:
        result.append(torch.stack(preacts))
    if save:
        result += [torch.stack(zs), torch.stack(us), torch.stack(masks), torch.stack(first)]
        if cell != "elman":
            result += [torch.stack(second), torch.stack(third)]
    return result


def routed_backward(cell: str, dy: torch.Tensor, dh: torch.Tensor, dc: torch.Tensor, ds_ext: torch.Tensor,
                    alive: Optional[torch.Tensor], resets: List[bool], k_x: torch.Tensor, k_h: torch.Tensor,
                    carry: Optional[torch.Tensor], k_c: Optional[torch.Tensor], c_carry: Optional[torch.Tensor],
                    c_keep: Optional[torch.Tensor], h_from_c: Optional[torch.Tensor], extra: Optional[torch.Tensor],
                    k_s: torch.Tensor, scale_sign: torch.Tensor, tanh_slope: torch.Tensor, mask: torch.Tensor,
                    w_ih: torch.Tensor, w_hh: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                    n_gates: int) -> List[torch.Tensor]:
    """Backward recursion of a routed layer (factors from :mod:`~sparsernn.core.fused_factors`).

    Per step: the cell's ``dgx``, ``dgh``; ``dx_kept = dgx @ W_ih``, ``dh_kept = dgh @ W_hh``;
    the scores' gradient ``ds = [dx_kept, dh_kept] * k_s + ds_ext`` (straight-through
    through the kept channels); through the router ``dpre = (ds @ U) * (1 - u^2)``,
    ``dz = ds * scale * sign(z) + dpre @ V``; the state read gets ``dh_kept * mask_h +
    dz_h`` plus the cell's direct terms, then the reset; the input ``dx_kept * mask_x + dz_x``. For the LSTM ``k_x`` is
    ``k_gates`` and ``carry`` is ``h_keep``. Returns ``[dh_all, dc_all, dgx_all, dgh_all,
    ds_all, dpre_all, dx_all, dh_0, dc_0]`` (``dx_all (T, G, B, I)`` the input's share).
    """
    steps, groups, batch, hidden = dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]
    n_in = k_s.shape[3] - hidden
    dys = dy.unbind(0)
    k_xs = k_x.view(steps, groups, batch, n_gates, hidden).unbind(0)
    k_hs = k_h.view(steps, groups, batch, n_gates, hidden).unbind(0)
    carries = carry.unbind(0) if carry is not None else []
    k_cs = k_c.unbind(0) if k_c is not None else []
    c_carries = c_carry.unbind(0) if c_carry is not None else []
    c_keeps = c_keep.unbind(0) if c_keep is not None else []
    h_from_cs = h_from_c.unbind(0) if h_from_c is not None else []
    extras = extra.unbind(0) if extra is not None else []
    alives = alive.unbind(0) if alive is not None else []
    k_ss, signs, slopes, masks, ds_exts = (k_s.unbind(0), scale_sign.unbind(0), tanh_slope.unbind(0),
                                            mask.unbind(0), ds_ext.unbind(0))
    dhs, dcs, dgxs, dghs, dss, dpres, dxs = [], [], [], [], [], [], []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dys[t]
        dhs.append(dh)
        dcs.append(dc)
        if cell == "lstm":
            e = torch.addcmul(dc, dh, k_cs[t])
            dgx = torch.cat([e, e, e, dh], 2) * k_xs[t].view(groups, batch, n_gates * hidden)
            dgh = dgx
            dc = e * c_carries[t]
            if c_keep is not None:
                dc = torch.addcmul(dc, dcs[i], c_keeps[t])
        else:
            spread = dh.unsqueeze(2)
            dgx = (k_xs[t] * spread).view(groups, batch, n_gates * hidden)
            dgh = dgx if cell == "elman" else (k_hs[t] * spread).view(groups, batch, n_gates * hidden)
        dx_kept = torch.bmm(dgx, w_ih)
        dh_kept = torch.bmm(dgh, w_hh)
        ds = torch.cat([dx_kept, dh_kept], 2) * k_ss[t] + ds_exts[t]
        dpre = torch.bmm(ds, up) * slopes[t]
        dz = torch.baddbmm(ds * signs[t], dpre, down)
        dh_read = torch.addcmul(dz[:, :, n_in:], dh_kept, masks[t][:, :, n_in:])
        if carry is not None:
            dh_read = torch.addcmul(dh_read, dh, carries[t])
        if h_from_c is not None:
            dh_read = torch.addcmul(dh_read, dcs[i], h_from_cs[t])
        if extra is not None:
            dh_read = dh_read + extras[t]
        dgxs.append(dgx)
        dghs.append(dgh)
        dss.append(ds)
        dpres.append(dpre)
        dxs.append(torch.addcmul(dz[:, :, :n_in], dx_kept, masks[t][:, :, :n_in]))
        if alive is not None and resets[t]:
            dh_read = dh_read * alives[t]
            dc = dc * alives[t]
        dh = dh_read
    for records in (dhs, dcs, dgxs, dghs, dss, dpres, dxs):
        records.reverse()
    return [torch.stack(dhs), torch.stack(dcs), torch.stack(dgxs), torch.stack(dghs), torch.stack(dss),
            torch.stack(dpres), torch.stack(dxs), dh, dc]
