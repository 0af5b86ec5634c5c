"""The fused backend: a whole sequence as one autograd node with a hand-derived backward.

For short calls on small layers (RL's 32 steps x 8 envs x 64 units, a
detector's stream) the cost of the reference backend is autograd's per-step
bookkeeping, not arithmetic. This backend runs the sequence, with the resets
and the selective-update switches inside, as one ``torch.autograd.Function``:

- input projections (``W_ih x + b_ih``, the event gate's ``W x + b``, the
  rhythm's schedule) for all steps at once, outside the node (autograd
  differentiates them and the masks);
- the recurrent loop and its backward recursion as TorchScript loops
  (:mod:`~sparsernn.core.fused_loops`), storing only the step values;
- the local derivative factors for all steps in a few whole-sequence ops,
  and the gradients of ``W_hh``, ``b_hh`` and the gate as one GEMM / sum.

Closed switches keep the state exactly; their straight-through gradient is
the one the reference defines (``sigmoid'`` of the pre-activation). Several
layers of one configuration that read the same input (a policy's actor and
critic) run as one *group*: every step is one batched GEMM for all of them.
Routed layers run the router inside the loop (:mod:`~sparsernn.core.fused_routed`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from .fused_factors import GATES, lstm_factors, single_state_factors, weight_grads
from .fused_loops import loop
from .native import native_enabled, native_loops
from .fused_routed import routed_group
from .statistics import make_trace
from .update_gates import rhythm_preactivations

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def _times_alive(factor: Optional[torch.Tensor], alive: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``factor * alive`` (the reset folded into a backward factor), contiguous; None stays None."""
    if factor is None:
        return None
    return (factor * alive if alive is not None else factor).contiguous()


class _FusedSequence(torch.autograd.Function):
    """``(y, h_T, c_T, a)`` of a group; ``c_T`` and ``a`` are empty when the cell / gate has none."""

    @staticmethod
    def forward(ctx, cell: str, gx, h, c, alive, resets, w_hh, b_hh, gate_x, gate_w):
        w_t = w_hh.transpose(1, 2)
        gated = gate_x is not None
        on_cpu = gx.device.type == "cpu"
        if cell == "lstm":
            out = loop("lstm_forward", on_cpu)(gx + b_hh, h, c, alive, resets, w_t, gate_x, gate_w, True)
            y, h_last, c_last, rest = out[0], out[1], out[2], out[3:]
        else:
            out = loop(f"{cell}_forward", on_cpu)(gx, h, alive, resets, w_t, b_hh, gate_x, gate_w, True)
            y, h_last, c_last, rest = out[0], out[1], h.new_empty(0), out[2:]
        preact = rest[0] if gated else h.new_empty(0)
        saved = rest[1:] if gated else rest
        ctx.cell, ctx.gated, ctx.resets = cell, gated, resets
        ctx.save_for_backward(w_hh, alive, gate_w, preact, *saved)
        return y, h_last, c_last, preact

    @staticmethod
    def backward(ctx, dy, dh, dc, da_ext):
        w_hh, alive, gate_w, preact, *saved = ctx.saved_tensors
        native = _native_cell_backward(ctx.cell, dy)
        if native is not None:  # C++: the cell's factors computed inside each step
            gated = ctx.gated
            preact, da_ext, h_read = (preact if gated else None), (da_ext if gated else None), saved[0]
            if ctx.cell == "lstm":
                dgx, dh0, dc0, da = native(dy, dh, dc, da_ext, *saved, preact, gate_w, alive, ctx.resets, w_hh)
                dgh = dgx
            else:
                dgx, dgh, dh0, da = native(dy, dh, da_ext, *saved, preact, gate_w, alive, ctx.resets, w_hh)
                dc0 = None
            da = da if gated else None
        elif ctx.cell == "lstm":
            dgx, dh0, dc0, da, h_read = _lstm_backward(dy, dh, dc, da_ext, saved, w_hh, alive, gate_w, preact,
                                                       ctx.gated)
            dgh = dgx
        else:
            dgx, dgh, dh0, da, h_read = _single_state_backward(ctx.cell, dy, dh, da_ext, saved, w_hh, alive,
                                                               gate_w, preact, ctx.gated)
            dc0 = None
        d_w, d_b = weight_grads(dgh, h_read)
        d_gate_w = None
        if da is not None and gate_w is not None:
            d_gate_w = (da * h_read).sum((0, 2)).unsqueeze(1)
        return None, dgx, dh0, dc0, None, None, d_w, d_b, da, d_gate_w


def _native_cell_backward(cell: str, dy: torch.Tensor):
    """The C++ GRU / LSTM backward (:mod:`~sparsernn.core.native`) when it applies, else None."""
    if cell == "elman" or dy.device.type != "cpu" or not native_enabled():
        return None
    native = native_loops()
    return None if native is None else getattr(native, f"{cell}_cell_backward")


def _single_state_backward(cell, dy, dh, da_ext, saved, w_hh, alive, gate_w, preact, gated):
    """Factors and recursion for GRU / Elman; returns ``(dgx, dgh, dh0, da, h_read)``."""
    h_read, saved = saved[0], saved[1:]
    k_x, k_h, carry, k_a = single_state_factors(cell, saved, h_read, preact if gated else None, gate_w)
    n_gates = GATES[cell]
    extra = gate_w * da_ext if gated and gate_w is not None else None
    dh_all, dh0 = loop("single_state_backward", dy.device.type == "cpu")(
        dy.contiguous(), dh.contiguous(), _times_alive(k_h, alive), _times_alive(carry, alive),
        _times_alive(extra, alive), w_hh, n_gates)
    steps, groups, batch, hidden = dh_all.shape
    by_gate = (steps, groups, batch, n_gates, hidden)
    spread = dh_all.unsqueeze(3)
    dgx = (k_x.reshape(by_gate) * spread).view(steps, groups, batch, -1)
    dgh = dgx if cell == "elman" else (k_h.reshape(by_gate) * spread).view(steps, groups, batch, -1)
    da = torch.addcmul(da_ext, dh_all, k_a) if gated else None
    return dgx, dgh, dh0, da, h_read


def _lstm_backward(dy, dh, dc, da_ext, saved, w_hh, alive, gate_w, preact, gated):
    """Factors and recursion for the LSTM; returns ``(dgates, dh0, dc0, da, h_read)``."""
    h_read = saved[0]
    f = lstm_factors(saved[1:], h_read, preact if gated else None, gate_w)
    extra = gate_w * da_ext if gated and gate_w is not None else None
    dh_all, e_all, dc_all, dh0, dc0 = loop("lstm_backward", dy.device.type == "cpu")(
        dy.contiguous(), dh.contiguous(), dc.contiguous(), f["k_c"].contiguous(), _times_alive(f["k_gates"], alive),
        _times_alive(f["c_carry"], alive), _times_alive(f["c_keep"], alive), _times_alive(f["h_keep"], alive),
        _times_alive(f["h_from_c"], alive), _times_alive(extra, alive), w_hh)
    dgates = torch.cat([e_all, e_all, e_all, dh_all], 3) * f["k_gates"]
    da = torch.addcmul(torch.addcmul(da_ext, dh_all, f["k_a_h"]), dc_all, f["k_a_c"]) if gated else None
    return dgates, dh0, dc0, da, h_read


def _check_group(layers: list["SparseRecurrent"]) -> None:
    first = layers[0]
    for layer in layers:
        key = (layer.cell, layer.input_size, layer.hidden_size, layer.update_gate, layer.router_keep,
               None if layer.router is None else layer.router.down.shape[0])
        if key != (first.cell, first.input_size, first.hidden_size, first.update_gate, first.router_keep,
                   None if first.router is None else first.router.down.shape[0]):
            raise ValueError(f"a fused group needs layers of one cell, size, update gate and router; "
                             f"got {first!r} and {layer!r}")


def run_fused_group(layers: list["SparseRecurrent"], x: torch.Tensor, hs: list[torch.Tensor],
                    cs: list[Optional[torch.Tensor]], times: list[Optional[torch.Tensor]],
                    episode_starts: Optional[torch.Tensor]) -> tuple[Any, ...]:
    """Run same-configuration layers over the same ``x (T, B, I)`` from their own states.

    Returns ``y (T, G, B, H)``, ``h (G, B, H)``, ``c (G, B, H)`` or None, the
    new time indices (per layer, None without a rhythm) and the traces.
    """
    _check_group(layers)
    first = layers[0]
    steps, batch, _ = x.shape
    alive, resets = None, [False] * steps
    if episode_starts is not None:
        resets = episode_starts.bool().any(1).tolist()  # one host sync per call
        if any(resets):
            alive = (1.0 - episode_starts.to(x.dtype)).view(steps, 1, batch, 1)
    h = torch.stack(hs)
    c = torch.stack(cs) if first.cell == "lstm" else None
    gate_x = gate_w = None
    new_times: list[Optional[torch.Tensor]] = [None] * len(layers)
    if first.update_gate == "event":
        gate_x = torch.stack([layer.gate.input_part(x) for layer in layers], 1)
        gate_w = torch.stack([layer.gate.weight_h for layer in layers]).unsqueeze(1)
    elif first.update_gate == "rhythm":
        parts = [rhythm_preactivations(layer.gate, time, episode_starts, steps) for layer, time in zip(layers, times)]
        gate_x = torch.stack([pre for pre, _ in parts], 1)
        new_times = [time for _, time in parts]
    scores = None
    if first.router is not None:
        y, h, c, scores, preact = routed_group(layers, x, h, c, alive, resets, gate_x, gate_w)
    else:
        y, h, c, preact = _static_group(layers, x, h, c, alive, resets, gate_x, gate_w)
    n_in, n_elements = first.input_size, steps * batch * first.hidden_size
    if preact is None and scores is None:
        traces = [make_trace([], [], [], [], n_elements) for _ in layers]
    else:
        traces = [_trace(preact[:, g] if preact is not None else None,
                         scores[:, g] if scores is not None else None, n_in, n_elements) for g in range(len(layers))]
    return y, h, c, new_times, traces


def _static_group(layers, x, h, c, alive, resets, gate_x, gate_w):
    """An unrouted group: input projections hoisted; returns ``y, h, c (or None), a (or None)``."""
    first = layers[0]
    steps, batch, _ = x.shape
    weights = [layer.effective_weights() for layer in layers]
    groups = len(layers)
    # All layers' input projections of all steps in one batched GEMM: (G, T*B, k*H) -> (T, G, B, k*H).
    w_ih = torch.stack([w for w, _ in weights])
    b_ih = torch.stack([layer.bias_ih for layer in layers]).unsqueeze(1)
    flat_x = x.reshape(1, steps * batch, -1).expand(groups, -1, -1)
    gx = torch.baddbmm(b_ih, flat_x, w_ih.transpose(1, 2)).view(groups, steps, batch, -1).transpose(0, 1)
    w_hh = torch.stack([w for _, w in weights])
    b_hh = torch.stack([layer.bias_hh for layer in layers]).unsqueeze(1)
    if torch.is_grad_enabled():
        y, h, c_out, preact = _FusedSequence.apply(first.cell, gx, h, c, alive, resets, w_hh, b_hh, gate_x, gate_w)
        return y, h, (c_out if first.cell == "lstm" else None), (preact if gate_x is not None else None)
    w_t = w_hh.transpose(1, 2)  # acting / inference: nothing to keep for a backward pass
    on_cpu = x.device.type == "cpu"
    if first.cell == "lstm":
        out = loop("lstm_forward", on_cpu)(gx + b_hh, h, c, alive, resets, w_t, gate_x, gate_w, False)
        return out[0], out[1], out[2], (out[3] if gate_x is not None else None)
    out = loop(f"{first.cell}_forward", on_cpu)(gx, h, alive, resets, w_t, b_hh, gate_x, gate_w, False)
    return out[0], out[1], None, (out[2] if gate_x is not None else None)


def _trace(preact: Optional[torch.Tensor], scores: Optional[torch.Tensor], n_in: int,
           n_elements: int) -> dict[str, Any]:
    """The call's trace (:func:`~sparsernn.core.statistics.make_trace`) from the switch
    pre-activations and the router scores of one layer (``(T, B, .)`` each)."""
    opens, open_st, importance_in, importance_h = [], [], [], []
    if preact is not None:
        is_open = preact > 0
        soft = torch.sigmoid(preact)
        opens.append(is_open.sum())
        open_st.append((is_open.to(preact.dtype) + (soft - soft.detach())).sum())
    if scores is not None:
        importance = torch.sigmoid(scores).sum((0, 1))
        importance_in.append(importance[:n_in])
        importance_h.append(importance[n_in:])
    return make_trace(opens, open_st, importance_in, importance_h, n_elements)


def fused_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor],
                  time: Optional[torch.Tensor], episode_starts: Optional[torch.Tensor]):
    """Same contract as :func:`~sparsernn.core.reference.reference_forward`."""
    y, h, c, times, traces = run_fused_group([layer], x, [h], [c], [time], episode_starts)
    return y[:, 0], (h[0], c[0] if c is not None else None, times[0]), traces[0]


def fused_group_forward(layers: list["SparseRecurrent"], x: torch.Tensor, states: list[torch.Tensor],
                        episode_starts: Optional[torch.Tensor] = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run same-configuration, unrouted layers over the same ``x (T, B, I)``, each from its own
    packed ``state (B, state_size)``, as one group: ``[(y, state), ...]``, what each
    ``layer(x, state, episode_starts)`` returns (and the same statistics and ``aux_loss``)."""
    for layer, state in zip(layers, states):
        layer._check_inputs(x, state, episode_starts)
    unpacked = [layer.unpack_state(state) for layer, state in zip(layers, states)]
    times = [time.detach() if time is not None else None for _, _, time in unpacked]
    y, h, c, new_times, traces = run_fused_group(layers, x, [u[0] for u in unpacked], [u[1] for u in unpacked],
                                                 times, episode_starts)
    results = []
    for g, layer in enumerate(layers):
        layer._record_call("fused", traces[g])
        state = layer.pack_state(h[g], c[g] if c is not None else None, new_times[g])
        results.append((y[:, g], state))
    return results
