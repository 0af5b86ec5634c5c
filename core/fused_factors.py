"""Local derivative factors of the fused backend, for all steps at once.

Both fused paths (:mod:`~sparsernn.core.fused`, :mod:`~sparsernn.core.fused_routed`)
write a step's backward as products of the incoming gradients with factors
that depend only on the forward values. They are computed here in a few
whole-sequence ops. Shapes ``(T, G, B, .)``; ``k`` gates per cell.

With ``dh`` (and for the LSTM ``dc``) the gradients reaching a step's
outputs, and ``a`` the switch pre-activation (``open = a > 0``):

- GRU / Elman: ``dgx = [dh]*k * k_x``, ``dgh = [dh]*k * k_h``; the gradient
  reaching the state the step read is ``dgh @ W_hh + dh * carry`` (+ the
  event gate's ``w * da``); ``da = dh * k_a`` (+ what the trace sends back).
- LSTM: ``e = dc + dh * k_c``, ``dgates = [e, e, e, dh] * k_gates``;
  ``dh_read = dgates @ W_hh + dh * h_keep + dc * h_from_c``,
  ``dc_read = e * c_carry + dc * c_keep``, ``da = dh * k_a_h + dc * k_a_c``.

A closed switch passes the gradient straight to the state it kept; its
straight-through part is ``sigmoid'(a)`` times the change it would have made.
"""
from __future__ import annotations

from typing import Optional

import torch

from .native import native_for
from .spec import GATES_PER_CELL as GATES


def refuse_double_backward(backend: str = "fused") -> None:
    """Raise when a fast backend's backward runs with ``create_graph=True`` (grad mode on inside
    it): the fused backward is hand-derived and not itself differentiable, so second-order
    gradients through it would be silently missing (``None``); the compiled one fails in
    torch.compile with a cryptic error. The reference backend supports them."""
    if torch.is_grad_enabled():
        raise RuntimeError(f"backend='{backend}' does not support double backward (autograd.grad or backward "
                           "with create_graph=True, e.g. for second-order gradients or gradient penalties): its "
                           "backward pass is not differentiable. Run the layer with "
                           "backend='reference' (set layer.backend = 'reference') for higher-order gradients.")


def switch_factors(preact: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(open, closed, slope)`` of the switch pre-activations, as floats; ``slope`` is the
    straight-through derivative, ``sigmoid'(a)`` where the switch is open and 0 where it is
    closed (a closed neuron's candidate is never computed; :func:`~sparsernn.core.cells.switch`)."""
    is_open = (preact > 0).to(preact.dtype)
    soft = torch.sigmoid(preact)
    return is_open, 1 - is_open, soft * (1 - soft) * is_open


def single_state_factors(cell: str, saved: list[torch.Tensor], h_read: torch.Tensor,
                         preact: Optional[torch.Tensor], gate_w: Optional[torch.Tensor]):
    """``(k_x, k_h, carry, k_a)`` of a GRU (``saved = [rz, n, ghn]``) or Elman (``[candidate]``)
    layer; ``carry`` is None for an ungated Elman layer, ``k_a`` None without a gate."""
    if cell == "gru":
        rz, n, ghn = saved
        hidden = n.shape[-1]
        r, z = rz[..., :hidden], rz[..., hidden:]
        k_n = (1 - z) * (1 - n * n)
        slope = rz * (1 - rz)
        k_r = k_n * ghn * slope[..., :hidden]
        k_z = (h_read - n) * slope[..., hidden:]
        k_x = torch.cat([k_r, k_z, k_n], 3)
        k_h = torch.cat([k_r, k_z, k_n * r], 3)
        carry: Optional[torch.Tensor] = z
        candidate = torch.addcmul(n, z, h_read - n) if preact is not None else None
    else:
        (candidate,) = saved
        k_x = k_h = 1 - candidate * candidate
        carry = None
    k_a = None
    if preact is not None:
        n_gates = GATES[cell]
        is_open, closed, slope_a = switch_factors(preact)
        k_a = (candidate - h_read) * slope_a
        spread_open = is_open.repeat(1, 1, 1, n_gates) if n_gates > 1 else is_open
        k_x = k_x * spread_open
        k_h = k_x if cell == "elman" else k_h * spread_open
        carry = closed if carry is None else torch.addcmul(closed, is_open, carry)
        if gate_w is not None:
            carry = torch.addcmul(carry, gate_w, k_a)
    return k_x, k_h, carry, k_a


def lstm_factors(saved: list[torch.Tensor], h_read: torch.Tensor, preact: Optional[torch.Tensor],
                 gate_w: Optional[torch.Tensor]) -> dict[str, Optional[torch.Tensor]]:
    """The LSTM's factors from ``saved = [c_read, act, candidate]`` (``act = [i, f, o, g]``):
    ``k_c, k_gates, c_carry, c_keep, h_keep, h_from_c, k_a_h, k_a_c`` (None where unused)."""
    c_read, act, candidate = saved
    hidden = candidate.shape[-1]
    i_g, f_g, o_g, g_g = (act[..., j * hidden:(j + 1) * hidden] for j in range(4))
    tanh_c = torch.tanh(candidate)
    out: dict[str, Optional[torch.Tensor]] = dict(
        k_c=o_g * (1 - tanh_c * tanh_c),
        k_gates=torch.cat([g_g * i_g * (1 - i_g), c_read * f_g * (1 - f_g), i_g * (1 - g_g * g_g),
                           tanh_c * o_g * (1 - o_g)], 3),
        c_carry=f_g, c_keep=None, h_keep=None, h_from_c=None, k_a_h=None, k_a_c=None)
    if preact is not None:
        is_open, closed, slope_a = switch_factors(preact)
        out["k_gates"] = out["k_gates"] * is_open.repeat(1, 1, 1, 4)
        out["c_carry"] = f_g * is_open
        out["c_keep"] = out["h_keep"] = closed
        out["k_a_h"] = (o_g * tanh_c - h_read) * slope_a
        out["k_a_c"] = (candidate - c_read) * slope_a
        if gate_w is not None:
            out["h_keep"] = torch.addcmul(closed, gate_w, out["k_a_h"])
            out["h_from_c"] = gate_w * out["k_a_c"]
    return out


def weight_grads(dgates: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dW (G, width, n)`` and ``db (G, 1, width)`` of ``gates = inputs @ W^T + b`` from
    ``dgates (T, G, B, width)`` and ``inputs (T, G, B, n)``: one GEMM over all steps."""
    steps, groups, batch, width = dgates.shape
    # As (inputs^T @ dgates)^T: both operands are then row-major views of group-major memory (what
    # the C++ loops keep; an expanded input stays a view), which MKL takes without packing a
    # transposed copy of dgates (~6x faster for a narrow input, e.g. W_ih at RL's sizes).
    flat_d = dgates.transpose(0, 1).reshape(groups, steps * batch, width)
    flat_in = inputs.transpose(0, 1).reshape(groups, steps * batch, inputs.shape[3])
    return torch.bmm(flat_in.transpose(1, 2), flat_d).transpose(1, 2), dgates.sum((0, 2)).unsqueeze(1)


# Up to this many gate-gradient elements per layer (1 MiB of float32, L2-resident), the C++
# weight-gradient GEMM (core/csrc/small_gemm.h) beats ATen's bmm; above it, bmm's cache blocking wins.
NATIVE_WEIGHT_GRAD_ELEMENTS = 1 << 18


def group_weight_grads(dgates: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``dW (G, width, n)`` and ``db (G, width)`` of ``gates = inputs @ W^T + b`` from
    ``dgates (T, G, B, width)`` and ``inputs (T, G, B, n)``, or ``(T, B, n)`` shared by the group;
    contiguous, so autograd takes them as the parameters' gradients without a copy."""
    steps, groups, batch, width = dgates.shape
    native = native_for(dgates, steps * batch * width <= NATIVE_WEIGHT_GRAD_ELEMENTS)
    if native is not None:
        return tuple(native.weight_grads(dgates, inputs))
    if inputs.dim() == 3:
        inputs = inputs.unsqueeze(1).expand(-1, groups, -1, -1)
    d_w, d_b = weight_grads(dgates, inputs)
    return d_w.contiguous(), d_b[:, 0]
