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

The forward runs the same operations on the same shapes whatever ``T`` (the input projections
entry by entry, the recurrent product one ``bmm`` per step), so a call of ``T`` steps gives the
same bits as ``T`` calls of one step (tested); it equals the reference's to rounding, not bits.
Where a switch is closed the state is kept exactly (``lerp`` with weight 0).
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


#: Up to this input width the input projections are element-wise products summed over the inputs
#: (for every step at once); wider inputs take one ``bmm`` per step.
SMALL_INPUT = 8


def _input_projection(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x (T, S, I)`` times each sample's ``weight (S, G, I)`` transposed: ``(T, S, G)``. Each entry is
    computed the same way whatever ``T`` (element-wise products added in input order, or a
    ``bmm`` per step), so a call of ``T`` steps gives the bits of ``T`` calls of one step."""
    if x.shape[2] <= SMALL_INPUT:
        out = x[:, :, 0:1] * weight[:, :, 0]
        for i in range(1, x.shape[2]):
            out = out + x[:, :, i:i + 1] * weight[:, :, i]
        return out
    weight_t = weight.transpose(1, 2).contiguous()
    return torch.stack([torch.bmm(x[t].unsqueeze(1), weight_t).squeeze(1) for t in range(x.shape[0])])


def _weight_gradient(grad: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``sum_t grad_t^T inputs_t`` per sample: ``grad (T, S, G)``, ``inputs (T, S, K)`` → ``(S, G, K)``,
    one batched product ``(S, G, T) @ (S, T, K)`` (``einsum``, which lays the operands out for
    ``bmm``); a single input as a sum over ``T`` of ``grad * input``."""
    if inputs.shape[2] == 1:
        return (grad * inputs).sum(0).unsqueeze(-1)
    return torch.einsum("tsg,tsk->sgk", grad, inputs)


class _PerSampleGRU(torch.autograd.Function):
    """The GRU (optionally event-gated) with per-sample weights as one autograd node.

    Forward, per step: ``gx = W_ih x_t + b_ih`` (for every step at once),
    ``gh = W_hh h + b_hh`` (one ``bmm`` over the samples), ``r, z = sigmoid(gx + gh)[:2H]``,
    ``n = tanh(gx_n + r gh_n)``, ``h' = n + z (h - n)``; with the event gate,
    ``a = W_x x_t + b`` (:data:`~sparsernn.core.update_gates.OPEN_PREACTIVATION` for always-open
    neurons) ``+ w_h h`` and ``h_t = h'`` where ``a > 0``, else exactly ``h``. Backward, per step:
    a few element-wise passes into preallocated tensors and one ``bmm``
    (``dh_{t-1} = ... + dg_h W_hh``), the projection gradients kept ``(T, S, 3H)``; the weight
    gradients at the end, one batched product each. The gate's straight-through gradient is
    ``da = dh * open * sigmoid'(a) * (h' - h)`` (open pairs only, as
    :func:`~sparsernn.core.cells.switch`)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, g_wx, g_wh, g_b, mask_ih, mask_hh, always_open):
        steps, samples, _ = x.shape
        hidden = h0.shape[1]
        w_ih_e = w_ih * mask_ih if mask_ih is not None else w_ih
        w_hh_e = w_hh * mask_hh if mask_hh is not None else w_hh
        w_hh_t = w_hh_e.transpose(1, 2)  # (S, H, 3H), a view: one kernel whatever T (the same bits)
        gx_all = _input_projection(x, w_ih_e) + b_ih
        gated = g_wx is not None
        # every step writes into these (out=): no allocation in the loop
        hs = x.new_empty(steps + 1, samples, hidden)
        hs[0] = h0
        gh_all = x.new_empty(steps, samples, 3 * hidden)
        rz_all = x.new_empty(steps, samples, 2 * hidden)
        n_all, cand_all = x.new_empty(steps, samples, hidden), x.new_empty(steps, samples, hidden)
        if gated:
            part_all = _input_projection(x, g_wx) + g_b
            if always_open is not None:
                from .update_gates import OPEN_PREACTIVATION

                part_all = part_all.masked_fill(always_open, OPEN_PREACTIVATION)
            preact_all = x.new_empty(steps, samples, hidden)
            open_all = x.new_empty(steps, samples, hidden)  # 1.0 where open, else 0.0
        b_hh = b_hh.unsqueeze(1)
        h = h0
        for t in range(steps):
            gx, gh, rz, n = gx_all[t], gh_all[t], rz_all[t], n_all[t]
            torch.baddbmm(b_hh, h.unsqueeze(1), w_hh_t, out=gh.unsqueeze(1))
            torch.add(gx[:, :2 * hidden], gh[:, :2 * hidden], out=rz).sigmoid_()
            torch.addcmul(gx[:, 2 * hidden:], rz[:, :hidden], gh[:, 2 * hidden:], out=n).tanh_()
            torch.lerp(n, h, rz[:, hidden:], out=cand_all[t])
            if gated:
                preact = torch.addcmul(part_all[t], g_wh, h, out=preact_all[t])
                is_open = torch.gt(preact, 0, out=open_all[t])
                h = torch.lerp(h, cand_all[t], is_open, out=hs[t + 1])  # exactly h where closed, h' where open
            else:
                h = cand_all[t]
                hs[t + 1] = h
        ghn_all = gh_all[:, :, 2 * hidden:]
        saved = [x, hs, rz_all, n_all, ghn_all, w_ih_e, w_hh_e]
        if gated:
            saved += [preact_all, cand_all, open_all, g_wx, g_wh]
        ctx.save_for_backward(*saved)
        ctx.gated, ctx.mask_ih, ctx.mask_hh, ctx.always_open = gated, mask_ih, mask_hh, always_open
        return hs[1:], h.clone()

    @staticmethod
    def backward(ctx, grad_y, grad_h):
        saved = ctx.saved_tensors
        x, hs, rz_all, n_all, ghn_all, w_ih_e, w_hh_e = saved[:7]
        gated = ctx.gated
        steps, samples, hidden = n_all.shape
        h_prev_all = hs[:-1]
        if gated:
            preact_all, cand_all, open_all, g_wx, g_wh = saved[7:]
            da_all = x.new_empty(steps, samples, hidden)
        # every step writes into these and a few (S, H) scratch tensors (out=): no allocation in the loop
        dgh_all = x.new_empty(steps, samples, 3 * hidden)  # [dg_r | dg_z | dgh_n]; d(gx) is [dg_r | dg_z | dg_n]
        dgn_all = x.new_empty(steps, samples, hidden)
        dh = grad_h.clone() if grad_h is not None else x.new_zeros(samples, hidden)
        dcand, dprev, one, two = (x.new_empty(samples, hidden) for _ in range(4))
        for t in range(steps - 1, -1, -1):
            if grad_y is not None:
                dh.add_(grad_y[t])
            r, z = rz_all[t, :, :hidden], rz_all[t, :, hidden:]
            n, h_prev, dgn, dgh = n_all[t], hs[t], dgn_all[t], dgh_all[t]
            if gated:
                torch.mul(dh, open_all[t], out=dcand)  # dL/dh' (the candidate): where open
                # straight-through at open pairs only: da = dh * open * sigmoid'(a) * (h' - h)
                soft = torch.sigmoid(preact_all[t], out=one)
                slope = torch.addcmul(soft, soft, soft, value=-1.0, out=one)
                torch.sub(cand_all[t], h_prev, out=two).mul_(slope)
                da = torch.mul(two, dcand, out=da_all[t])
                torch.sub(dh, dcand, out=dprev)  # exactly dh where closed, 0 where open
                dprev.addcmul_(da, g_wh).addcmul_(dcand, z)
            else:
                dcand.copy_(dh)
                torch.mul(dh, z, out=dprev)
            # h' = n + z (h - n), n = tanh(gx_n + r gh_n), r, z = sigmoid(gx + gh)[:2H]
            torch.addcmul(dcand, dcand, z, value=-1.0, out=dgn)  # dc (1 - z)
            torch.mul(n, n, out=one)
            dgn.addcmul_(dgn, one, value=-1.0)  # dc (1 - z)(1 - n^2)
            torch.addcmul(r, r, r, value=-1.0, out=one).mul_(ghn_all[t])  # r (1 - r) gh_n
            torch.mul(dgn, one, out=dgh[:, :hidden])
            torch.sub(h_prev, n, out=one).mul_(dcand)
            torch.addcmul(z, z, z, value=-1.0, out=two)  # z (1 - z)
            torch.mul(one, two, out=dgh[:, hidden:2 * hidden])
            torch.mul(dgn, r, out=dgh[:, 2 * hidden:])
            torch.baddbmm(dprev.unsqueeze(1), dgh.unsqueeze(1), w_hh_e, out=dh.unsqueeze(1))
        grads = [None] * 12
        need = ctx.needs_input_grad
        rz_grad = dgh_all[:, :, :2 * hidden]  # d(gx) and d(gh) share their r, z parts
        if need[2]:  # each weight's gradient once per call
            d = torch.cat([_weight_gradient(rz_grad, x), _weight_gradient(dgn_all, x)], 1)
            grads[2] = d * ctx.mask_ih if ctx.mask_ih is not None else d
        if need[3]:
            d = _weight_gradient(dgh_all, h_prev_all)
            grads[3] = d * ctx.mask_hh if ctx.mask_hh is not None else d
        if need[4]:
            grads[4] = torch.cat([rz_grad.sum(0), dgn_all.sum(0)], 1)
        if need[5]:
            grads[5] = dgh_all.sum(0)
        dpart = None
        if gated:
            dpart = da_all
            if ctx.always_open is not None:  # their W_x x + b is replaced by a constant
                dpart = da_all.masked_fill(ctx.always_open, 0.0)
            if need[6]:
                grads[6] = _weight_gradient(dpart, x)
            if need[7]:
                grads[7] = (da_all * h_prev_all).sum(0)
            if need[8]:
                grads[8] = dpart.sum(0)
        if need[0]:
            dgx_all = torch.cat([rz_grad, dgn_all], 2)
            dx = torch.bmm(dgx_all.transpose(0, 1), w_ih_e)  # (S, T, I)
            if gated:
                dx = dx + torch.bmm(dpart.transpose(0, 1), g_wx)
            grads[0] = dx.transpose(0, 1)
        if need[1]:
            grads[1] = dh
        return tuple(grads)
