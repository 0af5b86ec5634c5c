"""The update gate of a fused group, inside the group's autograd node.

Where the fused loops compute every candidate (:class:`~sparsernn.core.fused._FusedSequence`), the
gate's parameters go into the node beside the cell's and the switch pre-activations' input part is
computed in its forward, without autograd; its backward turns the gradient of the pre-activations
``da`` into the gate parameters' gradients. Before, the gate cost autograd a node per layer and a
stack of the group, each with its backward (for RL's policy: two ``addmm`` and a ``stack``, or two
schedule nodes, their time indices and a ``stack``; ``docs/benchmarks_selective_rl.md``):

- ``event``: ``W x + b`` of each layer by the same ``addmm`` as :meth:`EventGate.input_part` (so the
  same bits), stacked group-major, ``w`` stacked; backward: ``dW`` and
  ``db`` by the loops' weight-gradient GEMM (:func:`~sparsernn.core.fused_factors.group_weight_grads`),
  ``dw = sum(da * h_{t-1})`` and ``dx += da @ W`` summed over the group;
- ``rhythm``: the time indices of the whole group at once (:func:`group_time_indices`), then each
  layer's schedule by :func:`~sparsernn.core.update_gates.schedule_column`'s forward (the C++ call,
  the same bits); backward: its C++ backward (or the torch sum formula) per layer.

Always-open neurons are forced open as :meth:`_AlwaysOpen._force_open` does, and their gradient is
zero, as the reference's. The selective and routed loops keep computing the gate outside.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .fused_factors import group_weight_grads
from .update_gates import OPEN_PREACTIVATION, _Schedule, rhythm_preactivations, schedule_column, time_indices

#: Per gate, the parameters each layer hands to the group's node, in this order.
GATE_PARAMETERS = {"event": ("weight_x", "bias", "weight_h"), "rhythm": ("omega", "phase", "amplitude", "offset")}


class GateSpec(NamedTuple):
    """What the node needs beside the gate's parameters: the gate's kind, the always-open masks
    stacked ``(G, H)`` (None when no layer has any), and for the rhythm the time indices at the
    call's start ``(G, B)`` and the resets ``(T, B)`` or None."""
    kind: str
    always_open: Optional[torch.Tensor]
    time0: Optional[torch.Tensor] = None
    episode_starts: Optional[torch.Tensor] = None


def gate_inputs(layers, times, episode_starts) -> tuple[GateSpec, tuple]:
    """The group's :class:`GateSpec` and its gate parameters, all layers' first one, then their
    second, ... (:data:`GATE_PARAMETERS`)."""
    kind = layers[0].update_gate
    gates = [layer.gate for layer in layers]
    always_open = torch.stack([g.always_open for g in gates]) if any(g.n_always_open for g in gates) else None
    time0 = torch.stack(times) if kind == "rhythm" else None
    params = tuple(getattr(g, name) for name in GATE_PARAMETERS[kind] for g in gates)
    return GateSpec(kind, always_open, time0, episode_starts), params


def group_time_indices(time0: torch.Tensor, episode_starts: Optional[torch.Tensor], steps: int) -> torch.Tensor:
    """Time index of every step of every layer, ``(G, T, B)``: ``time0 (G, B) + t``, restarting at 0
    after a reset (:func:`~sparsernn.core.update_gates.time_indices` for the whole group at once)."""
    return time_indices(time0, episode_starts, steps)


def _split(groups: int, params: tuple) -> list[tuple]:
    """Per layer, its gate parameters (from all layers' first, then all layers' second, ...)."""
    return [params[g::groups] for g in range(groups)]


def preactivations(spec: GateSpec, x: torch.Tensor, params: tuple, groups: int):
    """``(gate_x (T, G, B, H), gate_w (G, 1, H) or None, times (G, T, B) or None, new times (G, B) or
    None)``: the switches' pre-activations but for the event gate's ``w * h_{t-1}``, a view of
    group-major memory, computed without autograd."""
    steps, batch, _ = x.shape
    times = new_times = gate_w = None
    with torch.no_grad():
        if spec.kind == "event":
            weight_x, bias, weight_h = params[:groups], params[groups:2 * groups], params[2 * groups:]
            flat = x.reshape(steps * batch, -1)  # F.linear's addmm on it: EventGate.input_part's bits
            out = torch.stack([torch.nn.functional.linear(flat, weight_x[g], bias[g]) for g in range(groups)])
            gate_w = torch.stack(weight_h).unsqueeze(1)
        else:
            times = group_time_indices(spec.time0, spec.episode_starts, steps)
            new_times = times[:, -1] + 1
            columns = [schedule_column(times[g].reshape(-1), p) for g, p in enumerate(_split(groups, params))]
            out = torch.stack(columns)
        if spec.always_open is not None:
            out.masked_fill_(spec.always_open.unsqueeze(1), OPEN_PREACTIVATION)
    gate_x = out.view(groups, steps, batch, -1).transpose(0, 1)
    return gate_x, gate_w, times, new_times


def parameter_grads(spec: GateSpec, da: torch.Tensor, x: torch.Tensor, h_read: torch.Tensor,
                    times: Optional[torch.Tensor], params: tuple, groups: int) -> tuple[tuple, Optional[torch.Tensor]]:
    """The gate parameters' gradients (in the order of ``params``) from ``da (T, G, B, H)``, the
    gradient of the switches' pre-activations (``h_read (T, G, B, H)``: the states each step read), and
    what :func:`event_input_grad` turns into the event gate's part of ``dx`` (None for the rhythm)."""
    if spec.always_open is not None:  # the reference's force is a torch.where: no gradient there
        da = da.masked_fill(spec.always_open.unsqueeze(1), 0.0)
    if spec.kind == "event":
        d_wx, d_b = group_weight_grads(da, x)
        d_wh = (da * h_read).sum((0, 2))
        return (*d_wx.unbind(0), *d_b.unbind(0), *d_wh.unbind(0)), da
    grads = []
    for g, p in enumerate(_split(groups, params)):
        column = times[g].reshape(-1)
        grads.append(_Schedule.backward_of(da[:, g].reshape(column.shape[0], -1), column, *p))
    return tuple(grads[g][i] for i in range(4) for g in range(groups)), None


def event_input_grad(da: torch.Tensor, params: tuple, groups: int) -> torch.Tensor:
    """``sum_g da_g @ W_g`` of shape ``(T, B, I)``: what the event gate's ``W x`` sends back to ``x``."""
    steps, _, batch, hidden = da.shape
    flat = da.transpose(0, 1).reshape(groups, steps * batch, hidden)
    return torch.bmm(flat, torch.stack(params[:groups])).sum(0).view(steps, batch, -1)


def outside_preactivations(layers, x, times, episode_starts, steps, new_times):
    """``(gate_x (T, G, B, H), gate_w (G, 1, H), new times)`` with autograd, for the loops that take the
    gate's pre-activations from outside (routed, selective); all None but ``new_times`` when ungated."""
    first = layers[0]
    gate_x = gate_w = None
    if first.update_gate == "event":
        gate_x = torch.stack([layer.gate.input_part(x) for layer in layers], 1)
        gate_w = torch.stack([layer.gate.weight_h for layer in layers]).unsqueeze(1)
    elif first.update_gate == "rhythm":
        parts = [rhythm_preactivations(layer.gate, time, episode_starts, steps) for layer, time in zip(layers, times)]
        gate_x = torch.stack([pre for pre, _ in parts], 1)
        new_times = [time for _, time in parts]
    return gate_x, gate_w, new_times
