"""The fused backend: a whole sequence as one autograd node with a hand-derived backward.

For short calls on small layers (RL's 32 steps x 8 envs x 64 units, a
detector's stream) the cost of the reference backend is autograd's per-step
bookkeeping, not arithmetic. This backend runs the sequence, with the resets
and the selective-update switches inside, as one ``torch.autograd.Function``:

- the layers' (masked) parameters and their update gates' parameters go in
  and their outputs come out one tensor each, so autograd sees one node per
  call (it differentiates the masks outside; the gate: :mod:`~sparsernn.core.fused_gates`);
- inside, the input projections ``W_ih x + b_ih`` of all steps at once, then
  the recurrent loop and its backward recursion, storing only the step
  values: C++ loops on a CPU (:mod:`~sparsernn.core.native`), TorchScript
  loops otherwise (:mod:`~sparsernn.core.fused_loops`);
- the local derivative factors (inside the C++ backward step, or for all
  steps in a few whole-sequence ops), and the gradients of ``W_ih``, ``b_ih``,
  ``W_hh``, ``b_hh`` and the gate as one GEMM / sum each.

Closed switches keep the state exactly; their straight-through gradient is
the one the reference defines (``sigmoid'`` of the pre-activation). Several
layers of one configuration that read the same input (a policy's actor and
critic) run as one *group*: every step is one batched GEMM for all of them.
Routed layers run the router inside the loop (:mod:`~sparsernn.core.fused_routed`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from .fused_factors import GATES, group_weight_grads as _weight_grads, lstm_factors, refuse_double_backward, \
    single_state_factors
from .fused_gates import event_input_grad, gate_inputs, outside_preactivations, parameter_grads, preactivations
from .fused_loops import loop
from .native import native_for
from .fused_routed import routed_group
from .fused_selective import selective_group, selective_native
from .statistics import make_trace

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def _times_alive(factor: Optional[torch.Tensor], alive: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``factor * alive`` (the reset folded into a backward factor), contiguous; None stays None."""
    if factor is None:
        return None
    return (factor * alive if alive is not None else factor).contiguous()


def _stacked_parameters(groups: int, params: tuple) -> tuple[torch.Tensor, ...]:
    """``(w_ih, b_ih, w_hh, b_hh)``, each stacked over the group, from ``params`` = the layers'
    ``w_ih``, then their ``b_ih``, ``w_hh`` and ``b_hh`` (``4 * groups`` tensors)."""
    return tuple(torch.stack(params[i * groups:(i + 1) * groups]) for i in range(4))


def _run_loop(cell: str, x, h, c, alive, resets, gate_x, gate_w, params: tuple, save: bool):
    """Input projections of all steps, then the recurrent loop, for a group whose per-layer
    parameters are ``params`` (see :func:`_stacked_parameters`).

    Returns ``y (T, G, B, H), h_T, c_T (empty unless lstm), a (empty unless gated)``, the switch
    sums ``(open count (G,) int64, sum of sigmoid(a) (G,))`` of a gated call with ``save`` (else
    None: what the update-rate loss reduces, :func:`switch_sums`) and the step values a backward
    pass needs (only with ``save``). The C++ loops take the per-layer tensors as they are (and take
    the sums inside the loop); otherwise they are stacked here and the TorchScript loops run."""
    groups = h.shape[0]
    native = _native_cell_entry(cell, x, "group_forward")
    if native is not None:
        w_ih, b_ih, w_hh, b_hh = (list(params[i * groups:(i + 1) * groups]) for i in range(4))
        if cell == "lstm":
            out = native(x, h, c, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x, gate_w, save)
        else:
            out = native(x, h, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x, gate_w, save)
    else:
        w_ih, b_ih, w_hh, b_hh = _stacked_parameters(groups, params)
        steps, batch, _ = x.shape
        flat_x = x.reshape(1, steps * batch, -1).expand(groups, -1, -1)
        gx = torch.baddbmm(b_ih.unsqueeze(1), flat_x, w_ih.transpose(1, 2))
        gx = gx.view(groups, steps, batch, -1).transpose(0, 1)
        w_t, b_hh = w_hh.transpose(1, 2), b_hh.unsqueeze(1)
        if cell == "lstm":
            out = loop("lstm_forward", x)(gx + b_hh, h, c, alive, resets, w_t, gate_x, gate_w, save)
        else:
            out = loop(f"{cell}_forward", x)(gx, h, alive, resets, w_t, b_hh, gate_x, gate_w, save)
    if cell == "lstm":
        y, h_last, c_last, rest = out[0], out[1], out[2], out[3:]
    else:
        y, h_last, c_last, rest = out[0], out[1], h.new_empty(0), out[2:]
    gated = gate_x is not None
    if not gated:
        return y, h_last, c_last, h.new_empty(0), None, rest
    preact, rest = rest[0], rest[1:]
    sums = None
    if save:
        sums, rest = ((rest[0], rest[1]), rest[2:]) if native is not None else (switch_sums(preact), rest)
    return y, h_last, c_last, preact, sums, rest


def switch_sums(preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer of a group, the open count ``(G,)`` (int64) and the sum of ``sigmoid(a)`` ``(G,)`` of
    the switch pre-activations ``a (T, G, B, H)``: what the C++ loops take inside their forward pass."""
    return (preact > 0).sum((0, 2, 3)), torch.sigmoid(preact).sum((0, 2, 3))


def soft_sum_grad(preact: torch.Tensor, d_soft: torch.Tensor) -> torch.Tensor:
    """The gradient reaching ``a (T, G, B, H)`` from ``d_soft (G,)``, that of each layer's sum of
    ``sigmoid(a)``: ``d_soft * sigmoid'(a)`` at every pair (what the C++ backward adds inside its recursion)."""
    soft = torch.sigmoid(preact)
    return soft * (1 - soft) * d_soft.view(1, -1, 1, 1)


def _native_cell_entry(cell: str, tensor: torch.Tensor, entry: str):
    """The C++ ``<cell>_<entry>`` (``group_forward`` or ``cell_backward``) of a GRU / LSTM for
    ``tensor``'s device when it applies (:func:`~sparsernn.core.native.native_for`), else None."""
    native = None if cell == "elman" else native_for(tensor)
    return None if native is None else getattr(native, f"{cell}_{entry}")


class _FusedSequence(torch.autograd.Function):
    """``(y_1, ..., y_G, h_T, c_T, a, open_count, soft_sum)`` of a group of ``G`` layers; ``c_T`` is
    empty but for the LSTM, and the last three but for a gated group.

    The update-rate loss reads the switches through the last two, per layer ``(G,)``: the open count
    (no gradient) and the sum of ``sigmoid(a)``, whose gradient the backward pass adds to that of
    every ``a`` inside its recursion. ``a`` itself (the switch record, for :meth:`statistics` and
    :meth:`update_usage`) has no gradient: no pass over it, and no zero tensor for its gradient, when
    nothing asks.

    Inputs: ``cell, G, gate (a GateSpec or None), x (T, B, I), h, c (G, B, H), alive, resets``, then
    each layer's ``w_ih``, each ``b_ih``, each ``w_hh``, each ``b_hh``, then the gate's parameters
    (:func:`~sparsernn.core.fused_gates.gate_inputs`): the switches' pre-activations are computed and
    differentiated inside (:mod:`~sparsernn.core.fused_gates`). The parameters come in per layer and
    the outputs go out per layer, so the group costs autograd one node (no stacking or selecting
    nodes around it). A rhythm group's time indices after the call, ``(G, B)``, come last.
    """

    @staticmethod
    def forward(ctx, cell: str, groups: int, gate, x, h, c, alive, resets, *params):
        params, gate_params = params[:4 * groups], params[4 * groups:]
        gate_x = gate_w = times = new_times = None
        if gate is not None:
            gate_x, gate_w, times, new_times = preactivations(gate, x, gate_params, groups)
        y, h_last, c_last, preact, sums, saved = _run_loop(cell, x, h, c, alive, resets, gate_x, gate_w, params,
                                                           True)
        count, soft = sums if sums is not None else (h.new_empty(0), h.new_empty(0))
        new_times = new_times if new_times is not None else h.new_empty(0)
        ctx.cell, ctx.gate, ctx.resets, ctx.groups, ctx.n_gate = cell, gate, resets, groups, len(gate_params)
        ctx.gated = gate is not None
        ctx.save_for_backward(x, alive, gate_w, preact, times, *params, *gate_params, *saved)
        ctx.mark_non_differentiable(preact, count, new_times)
        ctx.set_materialize_grads(False)  # None for what got no gradient (the record, often c_T, the sums)
        return (*y.unbind(1), h_last, c_last, preact, count, soft, new_times)

    @staticmethod
    def backward(ctx, *grads):
        refuse_double_backward()
        groups = ctx.groups
        dh, dc, _, _, d_soft, _ = grads[groups:]
        x, alive, gate_w, preact, times, *rest = ctx.saved_tensors
        steps, batch = x.shape[:2]
        hidden = rest[2 * groups].shape[1]  # the first W_hh (kH, H)
        shape = (steps, batch, hidden)
        dy = torch.stack([g if g is not None else x.new_zeros(shape) for g in grads[:groups]]).transpose(0, 1)
        dh = dh if dh is not None else x.new_zeros(groups, batch, hidden)
        if ctx.cell == "lstm" and dc is None:
            dc = x.new_zeros(groups, batch, hidden)
        d_soft = d_soft if ctx.gated else None
        params, gate_params, saved = rest[:4 * groups], rest[4 * groups:4 * groups + ctx.n_gate], rest[4 * groups + ctx.n_gate:]
        w_hh = torch.stack(params[2 * groups:3 * groups])
        native = _native_cell_entry(ctx.cell, dy, "cell_backward")
        if native is not None:  # C++: the cell's factors (and the sums' gradient) computed inside each step
            gated = ctx.gated
            preact, h_read = (preact if gated else None), saved[0]
            if ctx.cell == "lstm":
                dgx, dh0, dc0, da = native(dy, dh, dc, None, *saved, preact, gate_w, alive, ctx.resets, w_hh, d_soft)
                dgh = dgx
            else:
                dgx, dgh, dh0, da = native(dy, dh, None, *saved, preact, gate_w, alive, ctx.resets, w_hh, d_soft)
                dc0 = None
            da = da if gated else None
            return _fused_input_grads(ctx, groups, x, params, gate_params, times, dgx, dgh, dh0, dc0, da, h_read)
        da_ext = None
        if ctx.gated:
            da_ext = soft_sum_grad(preact, d_soft) if d_soft is not None else torch.zeros_like(preact)
        if ctx.cell == "lstm":
            dgx, dh0, dc0, da, h_read = _lstm_backward(dy, dh, dc, da_ext, saved, w_hh, alive, gate_w, preact,
                                                       ctx.gated)
            dgh = dgx
        else:
            dgx, dgh, dh0, da, h_read = _single_state_backward(ctx.cell, dy, dh, da_ext, saved, w_hh, alive,
                                                               gate_w, preact, ctx.gated)
            dc0 = None
        return _fused_input_grads(ctx, groups, x, params, gate_params, times, dgx, dgh, dh0, dc0, da, h_read)


def _fused_input_grads(ctx, groups, x, params, gate_params, times, dgx, dgh, dh0, dc0, da, h_read) -> tuple:
    """:class:`_FusedSequence`'s gradients of its inputs from the gate-input gradients ``dgx`` / ``dgh``,
    those of the initial state and of the switch pre-activations ``da`` (which give the gate
    parameters' gradients, :func:`~sparsernn.core.fused_gates.parameter_grads`)."""
    d_w_hh, d_b_hh = _weight_grads(dgh, h_read)
    d_w_ih, d_b_ih = _weight_grads(dgx, x)
    d_gate, da_x = (), None
    if ctx.gated:
        d_gate, da_x = parameter_grads(ctx.gate, da, x, h_read, times, gate_params, groups)
    dx = None
    if ctx.needs_input_grad[3]:  # (G, T*B, k*H) @ (G, k*H, I), summed over the group
        steps, batch = x.shape[:2]
        flat = dgx.transpose(0, 1).reshape(groups, steps * batch, -1)
        dx = torch.bmm(flat, torch.stack(params[:groups])).sum(0).view_as(x)
        if da_x is not None:
            dx = dx + event_input_grad(da_x, gate_params, groups)
    return (None, None, None, dx, dh0, dc0, None, None, *d_w_ih.unbind(0), *d_b_ih.unbind(0),
            *d_w_hh.unbind(0), *d_b_hh.unbind(0), *d_gate)


def _single_state_backward(cell, dy, dh, da_ext, saved, w_hh, alive, gate_w, preact, gated):
    """Factors and recursion for GRU / Elman; returns ``(dgx, dgh, dh0, da, h_read)``."""
    h_read, saved = saved[0], saved[1:]
    k_x, k_h, carry, k_a = single_state_factors(cell, saved, h_read, preact if gated else None, gate_w)
    n_gates = GATES[cell]
    extra = gate_w * da_ext if gated and gate_w is not None else None
    dh_all, dh0 = loop("single_state_backward", dy)(
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
    dh_all, e_all, dc_all, dh0, dc0 = loop("lstm_backward", dy)(
        dy.contiguous(), dh.contiguous(), dc.contiguous(), f["k_c"].contiguous(), _times_alive(f["k_gates"], alive),
        _times_alive(f["c_carry"], alive), _times_alive(f["c_keep"], alive), _times_alive(f["h_keep"], alive),
        _times_alive(f["h_from_c"], alive), _times_alive(extra, alive), w_hh)
    dgates = torch.cat([e_all, e_all, e_all, dh_all], 3) * f["k_gates"]
    da = torch.addcmul(torch.addcmul(da_ext, dh_all, f["k_a_h"]), dc_all, f["k_a_c"]) if gated else None
    return dgates, dh0, dc0, da, h_read


def check_group(layers: list["SparseRecurrent"]) -> None:
    """Refuse (ValueError) layers that differ in cell, sizes, update gate or router: a group is one configuration."""
    if len(layers) == 1:
        return
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

    Returns the outputs (a sequence of ``G`` tensors ``(T, B, H)``), ``h (G, B, H)``,
    ``c (G, B, H)`` or None, the new time indices (per layer, None without a rhythm)
    and the traces.
    """
    check_group(layers)
    first = layers[0]
    steps, batch, _ = x.shape
    alive, resets = None, [False] * steps
    if episode_starts is not None:
        resets = episode_starts.bool().any(1).tolist()  # one host sync per call
        if any(resets):
            alive = (1.0 - episode_starts.to(x.dtype)).view(steps, 1, batch, 1)
    h = torch.stack(hs)
    c = torch.stack(cs) if first.cell == "lstm" else None
    new_times: list[Optional[torch.Tensor]] = [None] * len(layers)
    scores, computed, sums = None, None, None
    selective = selective_native(layers, x) if first.router is None else None
    if first.update_gate is not None and first.router is None and selective is None:  # the gate inside the node
        gate, gate_params = gate_inputs(layers, times, episode_starts)
        ys, h, c, preact, sums, stacked_times = _static_group(layers, x, h, c, alive, resets, gate, gate_params)
        if stacked_times is not None:
            new_times = list(stacked_times.unbind(0))
    else:
        gate_x, gate_w, new_times = outside_preactivations(layers, x, times, episode_starts, steps, new_times)
        if first.router is not None:
            y, h, c, scores, preact = routed_group(layers, x, h, c, alive, resets, gate_x, gate_w)
            ys = y.unbind(1)
        elif selective is not None:
            weights = _group_params(layers)
            ys, h, c, preact, computed = selective_group(selective, first.cell, x, h, c, alive, resets, gate_x,
                                                         gate_w, weights)
        else:
            ys, h, c, preact, sums, _ = _static_group(layers, x, h, c, alive, resets, None, ())
    n_in, n_elements = first.input_size, steps * batch * first.hidden_size
    if preact is None and scores is None:
        traces = [make_trace([], [], [], [], n_elements) for _ in layers]
    else:
        # The router's importance (sigmoid of the scores, summed) feeds only the balance loss: as in the
        # compiled backend, it is computed when that loss is on. The scores themselves are kept as the
        # selection's (a reference, reduced only by channel_usage / statistics).
        keep = (first.keep_count_input, first.keep_count_hidden)
        # unbind, not preact[:, g]: one backward node that stacks the layers' gradients, where each
        # select's backward would write a zero tensor of the whole group; over the group-major memory
        # the loops keep (G, T, B, H), so that stack is already in the layout their backward reads
        preacts = preact.transpose(0, 1).unbind(0) if preact is not None else [None] * len(layers)
        traces = [_trace(preacts[g], scores[:, g] if scores is not None else None, n_in, n_elements, keep,
                         layer.router_balance_weight > 0) for g, layer in enumerate(layers)]
    if computed is not None:  # the selective loops skipped closed neurons: what they did compute
        for g, trace in enumerate(traces):
            trace["computed"] = computed[g]
    if sums is not None:  # the loops' own open count and sigmoid sum (the record then has no gradient)
        for g, trace in enumerate(traces):
            trace["open_count"], trace["soft_sum"] = sums[0][g], sums[1][g]
    return ys, h, c, new_times, traces


def _group_params(layers) -> tuple:
    """Each layer's (masked) ``w_ih``, then each ``b_ih``, each ``w_hh``, each ``b_hh``."""
    weights = [layer.effective_weights() for layer in layers]
    return (*[w for w, _ in weights], *[layer.bias_ih for layer in layers], *[w for _, w in weights],
            *[layer.bias_hh for layer in layers])


def _static_group(layers, x, h, c, alive, resets, gate, gate_params):
    """An unrouted group whose loops compute every candidate, the gate (a ``GateSpec`` or None) inside:
    returns the ``G`` outputs ``(T, B, H)``, ``h``, ``c`` (or None), ``a`` (or None), the switch sums
    ``(open count (G,), sum of sigmoid(a) (G,))`` of a gated call with gradient (:class:`_FusedSequence`;
    else None) and a rhythm's time indices after the call ``(G, B)`` (else None)."""
    cell = layers[0].cell
    params = _group_params(layers)
    sums = new_times = None
    if torch.is_grad_enabled():
        *ys, h, c_out, preact, count, soft, new_times = _FusedSequence.apply(cell, len(layers), gate, x, h, c, alive,
                                                                             resets, *params, *gate_params)
        sums = (count, soft) if gate is not None else None
    else:  # acting / inference: nothing to keep for a backward pass
        gate_x = gate_w = None
        if gate is not None:
            gate_x, gate_w, _, new_times = preactivations(gate, x, gate_params, len(layers))
        y, h, c_out, preact, _, _ = _run_loop(cell, x, h, c, alive, resets, gate_x, gate_w, params, False)
        ys = y.unbind(1)
    gated = gate is not None
    if not gated or gate.kind != "rhythm":
        new_times = None
    return ys, h, (c_out if cell == "lstm" else None), (preact if gated else None), sums, new_times


def _trace(preact: Optional[torch.Tensor], scores: Optional[torch.Tensor], n_in: int,
           n_elements: int, keep: tuple[int, int], importance: bool = True) -> dict[str, Any]:
    """The call's trace (:func:`~sparsernn.core.statistics.make_trace`) from the switch
    pre-activations and the router scores of one layer (``(T, B, .)`` each): the router's
    importance where ``importance`` (the balance loss is on), the scores as the selection's
    (the top-``keep`` of each side), recorded for the channel usage, and the pre-activations as
    the switch record. Nothing is reduced here: the open count and the straight-through sum are
    computed from the record when ``statistics()`` / ``aux_loss()`` ask, so acting calls (no
    gradient, never asked) pay nothing for them."""
    importance_in, importance_h = [], []
    if scores is not None and importance:
        total = torch.sigmoid(scores).sum((0, 1))
        importance_in.append(total[:n_in])
        importance_h.append(total[n_in:])
    lazy = None if preact is not None else []
    return make_trace(lazy, lazy, importance_in, importance_h, n_elements,
                      [scores] if scores is not None else None, keep,
                      switch=[preact] if preact is not None else None)


def fused_forward(layer: "SparseRecurrent", x: torch.Tensor, h: torch.Tensor, c: Optional[torch.Tensor],
                  time: Optional[torch.Tensor], episode_starts: Optional[torch.Tensor]):
    """Same contract as :func:`~sparsernn.core.reference.reference_forward`."""
    ys, h, c, times, traces = run_fused_group([layer], x, [h], [c], [time], episode_starts)
    return ys[0], (h[0], c[0] if c is not None else None, times[0]), traces[0]


def fused_group_forward(layers: list["SparseRecurrent"], x: torch.Tensor, states: list[torch.Tensor],
                        episode_starts: Optional[torch.Tensor] = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run same-configuration, unrouted layers over the same ``x (T, B, I)``, each from its own
    packed ``state (B, state_size)``, as one group: ``[(y, state), ...]``, what each
    ``layer(x, state, episode_starts)`` returns (and the same statistics and ``aux_loss``)."""
    for layer, state in zip(layers, states):
        layer._check_inputs(x, state, episode_starts)
    unpacked = [layer.unpack_state(state) for layer, state in zip(layers, states)]
    times = [time.detach() if time is not None else None for _, _, time in unpacked]
    ys, h, c, new_times, traces = run_fused_group(layers, x, [u[0] for u in unpacked], [u[1] for u in unpacked],
                                                 times, episode_starts)
    results = []
    for g, layer in enumerate(layers):
        layer._record_call("fused", traces[g], len(layers))
        state = layer.pack_state(h[g], c[g] if c is not None else None, new_times[g])
        results.append((ys[g], state))
    return results
