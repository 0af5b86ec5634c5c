"""The time loops of the fused backend: forward steps and the hand-derived backward recursion.

These functions are TorchScript-compiled on first use (:func:`scripted`); on a
CPU, :func:`loop` hands out C++ versions of the unrouted ones instead
(:mod:`~sparsernn.core.native`, same arguments and results). The autograd
wiring, the derivative factors and the weight gradients live in
:mod:`~sparsernn.core.fused`. Only what must run step by step is here.

Shapes: ``G`` layers run as one group (same cell and sizes), ``T`` steps,
``B`` sequences, ``H`` units, ``k`` gates per cell (1, 3 or 4).

- ``gx (T, G, B, k*H)``: input projections with their bias (for the LSTM
  also ``b_hh``); ``h``, ``c`` ``(G, B, H)``; ``alive (T, 1, B, 1)``, 0 where
  the state entering step t is reset, and ``resets[t]`` whether step t
  resets any sequence (only those steps multiply); ``w_t (G, H, k*H)`` is
  ``W_hh^T``, ``b_hh (G, 1, k*H)``.
- ``gate_x (T, G, B, H)``: the switch pre-activation without its recurrent
  part; ``gate_w (G, 1, H)`` the event gate's ``w`` (``a = gate_x + w ⊙ h``).
  A closed switch (``a <= 0``) keeps the state exactly (``torch.where``).

The forward loops return ``y (T, G, B, H)``, the final state(s) and, when
``save`` is set, the per-step values the backward pass needs (``h_read`` is
the state after the reset, the one the step reads).

Why the cells' equations are written again here rather than calling
:func:`~sparsernn.core.cells.cell_step`: these loops are TorchScript, and
their backward is hand-derived, so each step must keep its intermediate values
(GRU ``rz, n, ghn``; LSTM ``[i, f, o, g]`` and ``c``) for
:mod:`~sparsernn.core.fused_factors`, and fold ``b_hh`` and ``W_hh h`` into one
``baddbmm`` over the group; ``cell_step`` returns only the new state. They are
tested equal to the reference backend (outputs, states and every gradient) in
``tests/core/test_fused_backend.py`` and ``tests/core/test_backend_equivalence.py``.
"""
from __future__ import annotations

import functools
import warnings
from typing import List, Optional, Tuple

import torch

from .native import NATIVE_FUNCTIONS, native_for


def _gate_preactivation(gate_t: torch.Tensor, gate_w: Optional[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """The switch's pre-activation at one step: its hoisted input part, plus ``w * h`` for the event gate."""
    return torch.addcmul(gate_t, gate_w, h) if gate_w is not None else gate_t


def _results(outputs: List[torch.Tensor], finals: List[torch.Tensor], preacts: List[torch.Tensor], gated: bool,
             saved: List[List[torch.Tensor]]) -> List[torch.Tensor]:
    """A forward loop's return list: ``[y, *finals]``, then ``a`` (with a gate), then each saved sequence."""
    result = [torch.stack(outputs)] + finals
    if gated:
        result.append(torch.stack(preacts))
    for values in saved:
        result.append(torch.stack(values))
    return result


def gru_forward(gx: torch.Tensor, h: torch.Tensor, alive: Optional[torch.Tensor], resets: List[bool],
                w_t: torch.Tensor, b_hh: torch.Tensor, gate_x: Optional[torch.Tensor],
                gate_w: Optional[torch.Tensor], save: bool) -> List[torch.Tensor]:
    """Returns ``[y, h]``, then ``a`` (with a gate), then ``h_read, rz, n, ghn`` (with ``save``)."""
    hidden = h.shape[2]
    # Per step one baddbmm gives [gx_r + gh_r, gx_z + gh_z, gh_n] (biases included).
    base = torch.cat([gx[..., :2 * hidden] + b_hh[..., :2 * hidden],
                      b_hh[..., 2 * hidden:].expand(gx.shape[0], gx.shape[1], gx.shape[2], hidden)], 3).unbind(0)
    gx_n = gx[..., 2 * hidden:].unbind(0)
    alives = alive.unbind(0) if alive is not None else []
    gates = gate_x.unbind(0) if gate_x is not None else []
    outputs, h_reads, rzs, ns, ghns, preacts = [], [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None and resets[t]:
            h = h * alives[t]
        pre = torch.baddbmm(base[t], h, w_t)
        rz = torch.sigmoid(pre[..., :2 * hidden])
        ghn = pre[..., 2 * hidden:]
        r, z = rz.chunk(2, 2)
        n = torch.tanh(torch.addcmul(gx_n[t], r, ghn))
        h_new = torch.addcmul(n, z, h - n)
        if gate_x is not None:
            a = _gate_preactivation(gates[t], gate_w, h)
            h_new = torch.where(a > 0, h_new, h)
            preacts.append(a)
        if save:
            h_reads.append(h)
            rzs.append(rz)
            ns.append(n)
            ghns.append(ghn)
        h = h_new
        outputs.append(h)
    saved: List[List[torch.Tensor]] = []
    if save:
        saved = [h_reads, rzs, ns, ghns]
    return _results(outputs, [h], preacts, gate_x is not None, saved)


def elman_forward(gx: torch.Tensor, h: torch.Tensor, alive: Optional[torch.Tensor], resets: List[bool],
                  w_t: torch.Tensor, b_hh: torch.Tensor, gate_x: Optional[torch.Tensor],
                  gate_w: Optional[torch.Tensor], save: bool) -> List[torch.Tensor]:
    """Returns ``[y, h]``, then ``a`` (with a gate), then ``h_read, h_candidate`` (with ``save``)."""
    alives = alive.unbind(0) if alive is not None else []
    gates = gate_x.unbind(0) if gate_x is not None else []
    gxs = (gx + b_hh).unbind(0)
    outputs, h_reads, candidates, preacts = [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None and resets[t]:
            h = h * alives[t]
        h_new = torch.tanh(torch.baddbmm(gxs[t], h, w_t))
        if save:
            h_reads.append(h)
            candidates.append(h_new)
        if gate_x is not None:
            a = _gate_preactivation(gates[t], gate_w, h)
            h_new = torch.where(a > 0, h_new, h)
            preacts.append(a)
        h = h_new
        outputs.append(h)
    saved: List[List[torch.Tensor]] = []
    if save:
        saved = [h_reads, candidates]
    return _results(outputs, [h], preacts, gate_x is not None, saved)


def _lstm_cell(pre: torch.Tensor, c: torch.Tensor, hidden: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                         torch.Tensor]:
    """One LSTM step from the gate pre-activations ``pre (G, B, 4H)`` (order i, f, g, o) and
    ``c (G, B, H)``: ``(sigmoid([i, f, o]), tanh(g), c_new, h_new)``."""
    i_f, g_pre, o_pre = pre.split([2 * hidden, hidden, hidden], 2)
    ifo = torch.sigmoid(torch.cat([i_f, o_pre], 2))
    i_g, f_g, o_g = ifo.chunk(3, 2)
    g = torch.tanh(g_pre)
    c_new = torch.addcmul(f_g * c, i_g, g)
    return ifo, g, c_new, o_g * torch.tanh(c_new)


def lstm_forward(gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor, alive: Optional[torch.Tensor],
                 resets: List[bool], w_t: torch.Tensor, gate_x: Optional[torch.Tensor],
                 gate_w: Optional[torch.Tensor], save: bool) -> List[torch.Tensor]:
    """Returns ``[y, h, c]``, then ``a`` (with a gate), then ``h_read, c_read, act, c_candidate``
    (with ``save``; ``act = [i, f, o, g]``). ``gx`` includes ``b_hh``."""
    hidden = h.shape[2]
    gxs = gx.unbind(0)
    alives = alive.unbind(0) if alive is not None else []
    gates = gate_x.unbind(0) if gate_x is not None else []
    outputs, h_reads, c_reads, acts, candidates, preacts = [], [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None and resets[t]:
            h = h * alives[t]
            c = c * alives[t]
        ifo, g, c_new, h_new = _lstm_cell(torch.baddbmm(gxs[t], h, w_t), c, hidden)
        if save:
            h_reads.append(h)
            c_reads.append(c)
            acts.append(torch.cat([ifo, g], 2))
            candidates.append(c_new)
        if gate_x is not None:
            a = _gate_preactivation(gates[t], gate_w, h)
            is_open = a > 0
            h_new = torch.where(is_open, h_new, h)
            c_new = torch.where(is_open, c_new, c)
            preacts.append(a)
        h, c = h_new, c_new
        outputs.append(h)
    saved: List[List[torch.Tensor]] = []
    if save:
        saved = [h_reads, c_reads, acts, candidates]
    return _results(outputs, [h, c], preacts, gate_x is not None, saved)


def single_state_backward(dy: torch.Tensor, dh: torch.Tensor, k_h: torch.Tensor, carry: Optional[torch.Tensor],
                          extra: Optional[torch.Tensor], w_hh: torch.Tensor, n_gates: int) -> List[torch.Tensor]:
    """Backward recursion of a GRU / Elman layer.

    With ``dh`` the gradient reaching ``h_t`` (from ``y_t`` and step t+1), the
    gradient reaching ``h_{t-1}`` is
    ``([dh, ..., dh] * k_h[t]) @ W_hh + dh * carry[t] + extra[t]`` (``k`` copies of ``dh``)
    (reset and switch already folded into the factors). Returns
    ``[dh_all (T, G, B, H), dh_0]``.
    """
    dys = dy.unbind(0)
    steps, groups, batch, hidden = dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]
    # (G, B, k, H) views: dh broadcasts over the k gate blocks (no repeat copy per step).
    k_hs = k_h.view(steps, groups, batch, n_gates, hidden).unbind(0)
    carries = carry.unbind(0) if carry is not None else []
    extras = extra.unbind(0) if extra is not None else []
    dhs = []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dys[t]
        dhs.append(dh)
        dgh = (k_hs[t] * dh.unsqueeze(2)).view(groups, batch, n_gates * hidden)
        if carry is not None:
            dh = torch.baddbmm(dh * carries[t], dgh, w_hh)
        else:
            dh = torch.bmm(dgh, w_hh)
        if extra is not None:
            dh = dh + extras[t]
    dhs.reverse()
    return [torch.stack(dhs), dh]


def lstm_backward(dy: torch.Tensor, dh: torch.Tensor, dc: torch.Tensor, k_c: torch.Tensor, k_gates: torch.Tensor,
                  c_carry: torch.Tensor, c_keep: Optional[torch.Tensor], h_keep: Optional[torch.Tensor],
                  h_from_c: Optional[torch.Tensor], extra: Optional[torch.Tensor],
                  w_hh: torch.Tensor) -> List[torch.Tensor]:
    """Backward recursion of an LSTM layer.

    With ``dh``, ``dc`` the gradients reaching ``h_t``, ``c_t``:
    ``e = dc + dh * k_c[t]``, ``dgates = [e, e, e, dh] * k_gates[t]``,
    ``dh_{t-1} = dgates @ W_hh + dh * h_keep[t] + dc * h_from_c[t] + extra[t]``,
    ``dc_{t-1} = e * c_carry[t] + dc * c_keep[t]``. Returns
    ``[dh_all, e_all, dc_all, dh_0, dc_0]`` (``*_all`` are ``(T, G, B, H)``).
    """
    dys, k_cs, k_gs, c_carries = dy.unbind(0), k_c.unbind(0), k_gates.unbind(0), c_carry.unbind(0)
    c_keeps = c_keep.unbind(0) if c_keep is not None else []
    h_keeps = h_keep.unbind(0) if h_keep is not None else []
    h_from_cs = h_from_c.unbind(0) if h_from_c is not None else []
    extras = extra.unbind(0) if extra is not None else []
    steps = len(dys)
    dhs, es, dcs = [], [], []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dys[t]
        e = torch.addcmul(dc, dh, k_cs[t])
        dhs.append(dh)
        es.append(e)
        dcs.append(dc)
        dh_prev = torch.bmm(torch.cat([e, e, e, dh], 2) * k_gs[t], w_hh)
        if h_keep is not None:
            dh_prev = torch.addcmul(dh_prev, dh, h_keeps[t])
        if h_from_c is not None:
            dh_prev = torch.addcmul(dh_prev, dc, h_from_cs[t])
        if extra is not None:
            dh_prev = dh_prev + extras[t]
        dc_prev = e * c_carries[t]
        if c_keep is not None:
            dc_prev = torch.addcmul(dc_prev, dc, c_keeps[t])
        dh, dc = dh_prev, dc_prev
    dhs.reverse()
    es.reverse()
    dcs.reverse()
    return [torch.stack(dhs), torch.stack(es), torch.stack(dcs), dh, dc]


def loop(name: str, like: torch.Tensor):
    """The loop ``name`` to run on tensors such as ``like``: the C++ one
    (:mod:`~sparsernn.core.native`) for float32 / float64 CPU tensors when it exists and was
    built, else the TorchScript one."""
    native = native_for(like, name in NATIVE_FUNCTIONS)
    return scripted(name) if native is None else getattr(native, name)


@functools.cache
def scripted(name: str):
    """The TorchScript version of one of the loops above, or of the routed ones in
    :mod:`~sparsernn.core.fused_routed_loops` (scripted once per process, ~1 s)."""
    from . import fused_routed_loops

    function = globals().get(name) or getattr(fused_routed_loops, name)
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.compile
        warnings.simplefilter("ignore")
        return torch.jit.script(function)
