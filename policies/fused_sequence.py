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

It computes exactly what the core's reference backend computes (tested
against it, outputs and every gradient). Routed or gated layers go to the
core layer itself.
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
                 b_hh: torch.Tensor):
    hidden = h.shape[1]
    outputs, h_reads, rzs, ns, ghns = [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None:
            h = h * alive[t]
        gh = torch.addmm(b_hh, h, w_t)
        g = gx[t]
        rz = torch.sigmoid(g[:, :2 * hidden] + gh[:, :2 * hidden])
        ghn = gh[:, 2 * hidden:]
        n = torch.tanh(torch.addcmul(g[:, 2 * hidden:], rz[:, :hidden], ghn))
        h_reads.append(h)
        h = torch.addcmul(n, rz[:, hidden:], h - n)
        outputs.append(h)
        rzs.append(rz)
        ns.append(n)
        ghns.append(ghn)
    saved = [torch.stack(h_reads), torch.stack(rzs), torch.stack(ns), torch.stack(ghns)]
    return torch.stack(outputs), h, saved


def _gru_backward(dy: torch.Tensor, dh: torch.Tensor, saved: list[torch.Tensor], alive: Optional[torch.Tensor],
                  w_hh: torch.Tensor):
    h_reads, rz_all, n_all, ghn_all = saved[0], saved[1], saved[2], saved[3]
    steps, hidden = h_reads.shape[0], h_reads.shape[2]
    dgxs, dghs = [], []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dy[t]
        rz, n = rz_all[t], n_all[t]
        z = rz[:, hidden:]
        dan = dh * (1 - z) * (1 - n * n)
        da_rz = torch.cat([dan * ghn_all[t], dh * (h_reads[t] - n)], 1) * (rz * (1 - rz))
        dgxs.append(torch.cat([da_rz, dan], 1))
        dgh = torch.cat([da_rz, dan * rz[:, :hidden]], 1)
        dghs.append(dgh)
        dh = torch.addcmul(dgh @ w_hh, dh, z)
        if alive is not None:
            dh = dh * alive[t]
    dgxs.reverse()
    dghs.reverse()
    return torch.stack(dgxs), torch.stack(dghs), dh


def _lstm_forward(gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor, alive: Optional[torch.Tensor],
                  w_t: torch.Tensor, b_hh: torch.Tensor):
    hidden = h.shape[1]
    outputs, h_reads, c_reads, acts, cs = [], [], [], [], []
    for t in range(gx.shape[0]):
        if alive is not None:
            h = h * alive[t]
            c = c * alive[t]
        gates = torch.addmm(b_hh, h, w_t) + gx[t]
        ifo = torch.sigmoid(torch.cat([gates[:, :2 * hidden], gates[:, 3 * hidden:]], 1))
        g = torch.tanh(gates[:, 2 * hidden:3 * hidden])
        h_reads.append(h)
        c_reads.append(c)
        c = torch.addcmul(ifo[:, hidden:2 * hidden] * c, ifo[:, :hidden], g)
        h = ifo[:, 2 * hidden:] * torch.tanh(c)
        outputs.append(h)
        acts.append(torch.cat([ifo, g], 1))
        cs.append(c)
    saved = [torch.stack(h_reads), torch.stack(c_reads), torch.stack(acts), torch.stack(cs)]
    return torch.stack(outputs), h, c, saved


def _lstm_backward(dy: torch.Tensor, dh: torch.Tensor, dc: torch.Tensor, saved: list[torch.Tensor],
                   alive: Optional[torch.Tensor], w_hh: torch.Tensor):
    c_reads, acts, cs = saved[1], saved[2], saved[3]
    steps, hidden = c_reads.shape[0], c_reads.shape[2]
    dgates_all = []
    for i in range(steps):
        t = steps - 1 - i
        dh = dh + dy[t]
        a = acts[t]  # [i | f | o | g]
        ig, fg, og, gg = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]
        tc = torch.tanh(cs[t])
        dc = dc + dh * og * (1 - tc * tc)
        sig = torch.cat([dc * gg, dc * c_reads[t], dh * tc], 1) * (a[:, :3 * hidden] * (1 - a[:, :3 * hidden]))
        da_g = dc * ig * (1 - gg * gg)
        dgates = torch.cat([sig[:, :2 * hidden], da_g, sig[:, 2 * hidden:]], 1)  # torch order i, f, g, o
        dgates_all.append(dgates)
        dh = dgates @ w_hh
        dc = dc * fg
        if alive is not None:
            dh = dh * alive[t]
            dc = dc * alive[t]
    dgates_all.reverse()
    return torch.stack(dgates_all), dh, dc


@functools.cache
def _scripted(name: str):
    """TorchScript version of one of the loops above (scripted on first use, ~1 s)."""
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.compile
        warnings.simplefilter("ignore")
        return torch.jit.script(globals()[name])


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, h, alive, w_hh, b_hh):
        y, h, saved = _scripted("_gru_forward")(gx, h, alive, w_hh.t(), b_hh)
        ctx.save_for_backward(alive, w_hh, *saved)
        return y, h

    @staticmethod
    def backward(ctx, dy, dh):
        alive, w_hh, *saved = ctx.saved_tensors
        dgx, dgh, dh0 = _scripted("_gru_backward")(dy.contiguous(), dh, saved, alive, w_hh)
        hidden = w_hh.shape[1]
        dw = dgh.reshape(-1, 3 * hidden).t() @ saved[0].reshape(-1, hidden)
        return dgx, dh0, None, dw, dgh.sum((0, 1))


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gx, h, c, alive, w_hh, b_hh):
        y, h, c, saved = _scripted("_lstm_forward")(gx, h, c, alive, w_hh.t(), b_hh)
        ctx.save_for_backward(alive, w_hh, *saved)
        return y, h, c

    @staticmethod
    def backward(ctx, dy, dh, dc):
        alive, w_hh, *saved = ctx.saved_tensors
        dgates, dh0, dc0 = _scripted("_lstm_backward")(dy.contiguous(), dh, dc, saved, alive, w_hh)
        hidden = w_hh.shape[1]
        dw = dgates.reshape(-1, 4 * hidden).t() @ saved[0].reshape(-1, hidden)
        return dgates, dh0, dc0, None, dw, dgates.sum((0, 1))


def fused_forward(layer: SparseRecurrent, x: torch.Tensor, state: torch.Tensor,
                  episode_starts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a :func:`supports_fused` layer over ``x (T, B, I)`` from ``state (B, state_size)``.

    Same contract and results as ``layer(x, state, episode_starts)``.
    """
    if not supports_fused(layer):
        raise ValueError(f"the fused kernel runs GRU/LSTM layers without router or update gate; got {layer!r}")
    steps, batch, _ = x.shape
    w_ih, w_hh = layer.effective_weights()
    gx = torch.addmm(layer.bias_ih, x.reshape(steps * batch, -1), w_ih.t()).view(steps, batch, -1)
    alive = None if episode_starts is None else (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)
    h, c, _ = layer.unpack_state(state)
    h = h.contiguous()
    if layer.cell == "gru":
        y, h = _FusedGRU.apply(gx, h, alive, w_hh, layer.bias_hh)
        return y, h
    y, h, c = _FusedLSTM.apply(gx, h, c.contiguous(), alive, w_hh, layer.bias_hh)
    return y, torch.cat([h, c], 1)
