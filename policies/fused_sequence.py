"""A fused whole-sequence kernel for static-sparse GRU / LSTM layers (RL's small shapes on a CPU).

RL training calls the recurrent layer with short, small sequences (e.g. 32
steps x 8 envs x 64 units) hundreds of times per rollout, so the cost is the
per-operation overhead of autograd, not arithmetic. For layers whose
computation is fixed by their (masked) weights — no router, no update gate —
this kernel runs the sequence with the resets inside as one
``torch.autograd.Function``:

- the input projection ``x W_ih^T + b_ih`` of all steps is one GEMM, outside
  the function (autograd differentiates it and the masks);
- the recurrent loop (forward) and its hand-derived backward loop run as
  TorchScript functions, storing only the gate activations;
- the gradients of ``W_hh`` and ``b_hh`` are one GEMM / one sum over all steps.

Several layers of the same shape that read the same input (a policy's actor
and critic) run as one *group*: every step is one batched GEMM for all of
them, so the group costs about what one layer costs.

It computes exactly what the core's reference backend computes (tested
against it, outputs and every gradient). Routed or gated layers go to the
core layer itself.

Shapes inside the kernels: ``G`` layers, ``T`` steps, ``B`` sequences;
``gx (T, G, B, gates*H)``, states ``(G, B, H)``, ``alive (T, 1, B, 1)``,
``w_t (G, H, gates*H)``, ``w_hh (G, gates*H, H)``, ``b_hh (G, 1, gates*H)``.
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional

import torch

from sparsernn.core import SparseRecurrent


def supports_fused(layer: SparseRecurrent) -> bool:
    """Whether ``layer`` can run on this kernel: a GRU or LSTM without router or update gate."""
    return layer.cell in ("gru", "lstm") and layer.router is None and layer.update_gate is None


def _gru_forward(gx: torch.Tensor, h: torch.Tensor, alive: Optional[torch.Tensor], w_t: torch.Tensor,
                 b_hh: torch.Tensor, for_backward: bool):
    hidden = h.shape[2]
    # Per-step views made once (each slice is a dispatched op, so none in the loop).
    gx_rz = gx[..., :2 * hidden].unbind(0)
    gx_n = gx[..., 2 * hidden:].unbind(0)
    alives = alive.unbind(0) if alive is not None else []
    outputs, h_reads, rzs, ns, ghns = [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None:
            h = h * alives[t]
        gh_rz, ghn = torch.baddbmm(b_hh, h, w_t).split([2 * hidden, hidden], 2)
        rz = torch.sigmoid(gx_rz[t] + gh_rz)
        r, z = rz.chunk(2, 2)
        n = torch.tanh(torch.addcmul(gx_n[t], r, ghn))
        h_reads.append(h)
        h = torch.addcmul(n, z, h - n)
        outputs.append(h)
        rzs.append(rz)
        ns.append(n)
        ghns.append(ghn)
    if not for_backward:
        return torch.stack(outputs), h, [h]
    h_read, rz, n, ghn = torch.stack(h_reads), torch.stack(rzs), torch.stack(ns), torch.stack(ghns)
    # Local derivatives for the backward pass, for all steps at once: with
    # d3 = [dh, dh, dh], dgx = d3 * k_x, dgh = d3 * k_h, and the gradient
    # reaching the previous state is alive * (dgh @ W_hh + dh * z).
    r, z = rz[..., :hidden], rz[..., hidden:]
    k_n = (1 - z) * (1 - n * n)
    k_rz = torch.cat([k_n * ghn, h_read - n], 3) * (rz * (1 - rz))
    k_x = torch.cat([k_rz, k_n], 3)
    k_h = torch.cat([k_rz, k_n * r], 3)
    if alive is not None:
        k_h_alive, z_alive = k_h * alive, z * alive
    else:
        k_h_alive, z_alive = k_h, z
    return torch.stack(outputs), h, [h_read, k_x, k_h, k_h_alive.contiguous(), z_alive.contiguous()]


def _gru_backward(dy: torch.Tensor, dh: torch.Tensor, saved: list[torch.Tensor], w_hh: torch.Tensor):
    k_h_alive, z_alive, dys = saved[3].unbind(0), saved[4].unbind(0), dy.unbind(0)
    steps = len(dys)
    d3s = []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dys[t]
        d3 = dh.repeat(1, 1, 3)
        d3s.append(d3)
        dh = torch.baddbmm(dh * z_alive[t], d3 * k_h_alive[t], w_hh)
    d3s.reverse()
    d3_all = torch.stack(d3s)
    return d3_all * saved[1], d3_all * saved[2], dh


def _lstm_forward(gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor, alive: Optional[torch.Tensor],
                  w_t: torch.Tensor, for_backward: bool):
    hidden = h.shape[2]
    gxs = gx.unbind(0)
    alives = alive.unbind(0) if alive is not None else []
    outputs, h_reads, c_reads, acts, cs = [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None:
            h = h * alives[t]
            c = c * alives[t]
        i_f, g_pre, o_pre = torch.baddbmm(gxs[t], h, w_t).split([2 * hidden, hidden, hidden], 2)
        ifo = torch.sigmoid(torch.cat([i_f, o_pre], 2))
        i_g, f_g, o_g = ifo.chunk(3, 2)
        g = torch.tanh(g_pre)
        h_reads.append(h)
        c_reads.append(c)
        c = torch.addcmul(f_g * c, i_g, g)
        h = o_g * torch.tanh(c)
        outputs.append(h)
        acts.append(torch.cat([ifo, g], 2))
        cs.append(c)
    if not for_backward:
        return torch.stack(outputs), h, c, [h]
    h_read, c_read, act, c_all = torch.stack(h_reads), torch.stack(c_reads), torch.stack(acts), torch.stack(cs)
    # Local derivatives for all steps at once (torch's gate order i, f, g, o):
    # dc += dh * k_c; dgates = [dc, dc, dc, dh] * k_gates; the state gradients
    # reaching the previous step are alive * (dgates @ W_hh) and alive * f * dc.
    i_g, f_g, o_g, g_g = act[..., :hidden], act[..., hidden:2 * hidden], act[..., 2 * hidden:3 * hidden], \
        act[..., 3 * hidden:]
    tc = torch.tanh(c_all)
    k_c = o_g * (1 - tc * tc)
    k_gates = torch.cat([g_g * i_g * (1 - i_g), c_read * f_g * (1 - f_g), i_g * (1 - g_g * g_g),
                         tc * o_g * (1 - o_g)], 3)
    if alive is not None:
        k_gates_alive, f_alive = k_gates * alive, f_g * alive
    else:
        k_gates_alive, f_alive = k_gates, f_g
    saved = [h_read, k_c.contiguous(), k_gates, k_gates_alive.contiguous(), f_alive.contiguous()]
    return torch.stack(outputs), h, c, saved


def _lstm_backward(dy: torch.Tensor, dh: torch.Tensor, dc: torch.Tensor, saved: list[torch.Tensor],
                   w_hh: torch.Tensor):
    k_c, k_gates_alive, f_alive = saved[1].unbind(0), saved[3].unbind(0), saved[4].unbind(0)
    dys = dy.unbind(0)
    steps = len(dys)
    d4s = []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dys[t]
        dc = torch.addcmul(dc, dh, k_c[t])
        d4 = torch.cat([dc, dc, dc, dh], 2)
        d4s.append(d4)
        dh = torch.bmm(d4 * k_gates_alive[t], w_hh)
        dc = dc * f_alive[t]
    d4s.reverse()
    return torch.stack(d4s) * saved[2], dh, dc


@functools.cache
def _scripted(name: str):
    """TorchScript version of one of the loops above (scripted on first use, ~1 s)."""
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.compile
        warnings.simplefilter("ignore")
        return torch.jit.script(globals()[name])


def _weight_grads(dgates: torch.Tensor, h_read: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dW_hh (G, gates*H, H)`` and ``db_hh (G, 1, gates*H)`` from ``dgates (T, G, B, gates*H)``."""
    steps, groups, batch, width = dgates.shape
    flat_d = dgates.permute(1, 3, 0, 2).reshape(groups, width, steps * batch)
    flat_h = h_read.permute(1, 0, 2, 3).reshape(groups, steps * batch, h_read.shape[3])
    return torch.bmm(flat_d, flat_h), dgates.sum((0, 2)).unsqueeze(1)


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, h, alive, w_hh, b_hh):
        y, h, saved = _scripted("_gru_forward")(gx, h, alive, w_hh.transpose(1, 2), b_hh, True)
        ctx.save_for_backward(w_hh, *saved)
        return y, h

    @staticmethod
    def backward(ctx, dy, dh):
        w_hh, *saved = ctx.saved_tensors
        dgx, dgh, dh0 = _scripted("_gru_backward")(dy.contiguous(), dh.contiguous(), saved, w_hh)
        return (dgx, dh0, None, *_weight_grads(dgh, saved[0]))


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, h, c, alive, w_hh, b_hh):
        y, h, c, saved = _scripted("_lstm_forward")(gx + b_hh, h, c, alive, w_hh.transpose(1, 2), True)
        ctx.save_for_backward(w_hh, *saved)
        return y, h, c

    @staticmethod
    def backward(ctx, dy, dh, dc):
        w_hh, *saved = ctx.saved_tensors
        dgates, dh0, dc0 = _scripted("_lstm_backward")(dy.contiguous(), dh.contiguous(), dc.contiguous(), saved,
                                                       w_hh)
        return (dgates, dh0, dc0, None, *_weight_grads(dgates, saved[0]))


def fused_group_forward(layers: list[SparseRecurrent], x: torch.Tensor, states: list[torch.Tensor],
                        episode_starts: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run same-shaped :func:`supports_fused` layers over the same ``x (T, B, I)``, each from its own
    ``state (B, state_size)``, as one group. Returns ``[(y, state), ...]`` as each ``layer(x, state,
    episode_starts)`` would."""
    first = layers[0]
    for layer in layers:
        if not supports_fused(layer):
            raise ValueError(f"the fused kernel runs GRU/LSTM layers without router or update gate; got {layer!r}")
        if (layer.cell, layer.input_size, layer.hidden_size) != (first.cell, first.input_size, first.hidden_size):
            raise ValueError(f"a group needs layers of one cell and size; got {first!r} and {layer!r}")
    steps, batch, _ = x.shape
    flat_x = x.reshape(steps * batch, -1)
    weights = [layer.effective_weights() for layer in layers]
    gx = torch.stack([torch.addmm(layer.bias_ih, flat_x, w_ih.t()).view(steps, batch, -1)
                      for layer, (w_ih, _) in zip(layers, weights)], 1)
    w_hh = torch.stack([w for _, w in weights])
    b_hh = torch.stack([layer.bias_hh for layer in layers]).unsqueeze(1)
    alive = None if episode_starts is None else (1.0 - episode_starts.to(x.dtype)).view(steps, 1, batch, 1)
    unpacked = [layer.unpack_state(state) for layer, state in zip(layers, states)]
    h = torch.stack([hc[0] for hc in unpacked])
    grad = torch.is_grad_enabled()
    if first.cell == "gru":
        if grad:
            y, h = _FusedGRU.apply(gx, h, alive, w_hh, b_hh)
        else:  # acting: no derivatives to keep
            y, h, _ = _scripted("_gru_forward")(gx, h, alive, w_hh.transpose(1, 2), b_hh, False)
        return [(y[:, g], h[g]) for g in range(len(layers))]
    c = torch.stack([hc[1] for hc in unpacked])
    if grad:
        y, h, c = _FusedLSTM.apply(gx, h, c, alive, w_hh, b_hh)
    else:
        y, h, c, _ = _scripted("_lstm_forward")(gx + b_hh, h, c, alive, w_hh.transpose(1, 2), False)
    return [(y[:, g], torch.cat([h[g], c[g]], 1)) for g in range(len(layers))]


def fused_forward(layer: SparseRecurrent, x: torch.Tensor, state: torch.Tensor,
                  episode_starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a :func:`supports_fused` layer over ``x (T, B, I)`` from ``state (B, state_size)``.

    Same contract and results as ``layer(x, state, episode_starts)``.
    """
    return fused_group_forward([layer], x, [state], episode_starts)[0]
