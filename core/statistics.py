"""Per-call statistics and auxiliary losses of a :class:`SparseRecurrent`.

Both backends hand back the same *trace* (see :func:`make_trace`), so the
statistics and losses do not depend on which backend ran.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .update_gates import rate_penalty

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def make_trace(open_counts: list[torch.Tensor] | None, open_st_sums: list[torch.Tensor] | None,
               importance_in: list[torch.Tensor], importance_h: list[torch.Tensor], n_elements: int,
               selection_scores: list[torch.Tensor] | None = None,
               keep_counts: tuple[int, int] | None = None,
               switch: list[torch.Tensor] | None = None,
               computed: int | torch.Tensor | None = None) -> dict[str, Any]:
    """Reduce per-step records to the trace of one call.

    Parameters
    ----------
    open_counts : per step, the number of open switches (scalar, no gradient); or None: counted
        from ``switch`` when asked (:func:`open_count`)
    open_st_sums : per step, the straight-through sum of switches (scalar with gradient); or None:
        ``open_count + sum(sigmoid(a)) - sum(sigmoid(a)).detach()`` from ``switch`` (pre-activations
        with their gradient) when :func:`aux_loss` asks (:func:`open_st_sum`)
    importance_in, importance_h : per step, ``sigmoid(scores).sum(0)`` of shape (I,) / (H,)
    n_elements : ``T * B * H``, the number of switches of the call
    selection_scores : optional, the scores the router's top-k selections were taken over,
        ``(..., I + H)`` each (per step ``(B, I + H)``, or the whole call ``(T, B, I + H)``; with
        exploration noise, the noisy scores). Kept detached and reduced only when asked
        (:func:`channel_usage`), so a call pays nothing for it.
    keep_counts : ``(k_in, k_h)``, the call's budgets, given with ``selection_scores``
    switch : optional, the switch record of a gated layer: tensors ``(..., H)``, per step ``(B, H)``
        or the whole call ``(T, B, H)``, each either the switch pre-activations (open where > 0)
        or the boolean ``is_open`` masks. Kept as given (a reference, no copy) and reduced only
        when asked: per-neuron open counts (:func:`update_usage`), and the open count / the
        straight-through sum where ``open_counts`` / ``open_st_sums`` are None. The reductions
        detach, except the straight-through sum, which needs pre-activations with their gradient.
    computed : optional, the number of (step, sample, neuron) candidates the backend actually
        computed (an int or a 0-dim tensor); default ``n_elements`` (every candidate: the
        reference, compiled and fused backends). ``statistics()["computed_fraction"]`` is
        ``computed / n_elements``.

    A backend may add ``trace["soft_sum"]``: ``sum(sigmoid(a))`` over the call's switches, with the
    gradient of that sum, which :func:`open_st_sum` then uses instead of reducing the record (the
    fused loops take it, and the open count, inside their forward pass; their record has no gradient).
    """
    def total(items):
        return torch.stack(items).sum(0) if items else None

    selection = None
    if selection_scores:
        if keep_counts is None:
            raise ValueError("keep_counts must be given with selection_scores")
        selection = ([s.detach() for s in selection_scores], tuple(keep_counts))
    if (open_counts is None or open_st_sums is None) and not switch:
        open_counts, open_st_sums = open_counts or [], open_st_sums or []  # nothing to count: ungated
    return {"open_count": None if open_counts is None else total(open_counts),
            "open_st_sum": None if open_st_sums is None else total(open_st_sums),
            "importance_in": total(importance_in), "importance_h": total(importance_h),
            "n_elements": n_elements, "selection": selection, "switch": list(switch) if switch else None,
            "computed": n_elements if computed is None else computed}


def detached(value: Any) -> Any:
    """``value`` with its tensors detached: a tensor, or a list / tuple of them (nested); anything else as is."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(detached(item) for item in value)
    return value


def _opens(record: torch.Tensor) -> torch.Tensor:
    """Boolean ``is_open`` of a switch record (pre-activations or masks), detached."""
    record = record.detach()
    return record if record.dtype == torch.bool else record > 0


def open_count(trace: dict[str, Any] | None):
    """The last call's number of open switches (a scalar, no gradient), or None (no gated call)."""
    if trace is None:
        return None
    if trace["open_count"] is None and trace.get("switch"):
        trace["open_count"] = sum(_opens(record).sum() for record in trace["switch"])  # once, then kept
    return trace["open_count"]


def open_st_sum(trace: dict[str, Any] | None):
    """The straight-through sum of the last call's switches (forward: the open count; gradient: that
    of ``sum(sigmoid(a))``), or None (no gated call)."""
    if trace is None:
        return None
    if trace["open_st_sum"] is None and trace.get("switch"):
        soft = trace.get("soft_sum")  # taken by the fused loops (their backward carries its gradient)
        if soft is None:
            soft = sum(torch.sigmoid(record).sum() for record in trace["switch"])
        return open_count(trace) + (soft - soft.detach())
    return trace["open_st_sum"]


def kept_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the top-``k`` entries of each row of ``scores (..., W)``; among equal
    scores the lower channel index wins (the tie rule of every backend)."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, True)


def _kept_counts(layer: "SparseRecurrent", trace: dict[str, Any] | None):
    """``(kept_in (I,), kept_h (H,), rows)``: per channel, the number of the last call's (step,
    sample) rows whose selection kept it, and the number of rows; None without a recorded selection."""
    if layer.router is None or trace is None or trace.get("selection") is None:
        return None
    scores, (k_in, k_h) = trace["selection"]
    n_in = layer.input_size
    rows = torch.cat([s.reshape(-1, s.shape[-1]) for s in scores])
    return kept_mask(rows[:, :n_in], k_in).sum(0), kept_mask(rows[:, n_in:], k_h).sum(0), rows.shape[0]


def channel_usage(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> dict[str, torch.Tensor]:
    """Per channel, the share of the last call's (step, sample) rows whose selection kept it.

    Returns ``{"input": (I,), "hidden": (H,)}`` (float64 tensors in [0, 1], no gradient), or ``{}``
    for an unrouted layer or before the first call (every backend records its selection).
    """
    counts = _kept_counts(layer, trace)
    if counts is None:
        return {}
    kept_in, kept_h, rows = counts
    return {"input": kept_in.double() / rows, "hidden": kept_h.double() / rows}


def update_usage(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> torch.Tensor | None:
    """Per neuron, the share of the last call's (step, sample) pairs at which its switch was open.

    Returns a float64 tensor ``(H,)`` in [0, 1] (no gradient; its mean is the call's update rate),
    or None for a layer without an update gate, before the first call, or when the backend recorded
    no switch record (every backend of this package does).
    """
    if layer.update_gate is None or trace is None or not trace.get("switch"):
        return None
    H = layer.hidden_size
    counts, rows = None, 0
    for record in trace["switch"]:
        opens = _opens(record).reshape(-1, H)
        counts = opens.sum(0) if counts is None else counts + opens.sum(0)
        rows += opens.shape[0]
    return counts.double() / rows


def layer_statistics(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> dict[str, float]:
    """Realised densities, hidden proportion, active fractions, the last call's update rate and the
    share of its candidates that were computed (``computed_fraction``: 1.0 for an ungated layer and
    for backends that compute every candidate; NaN, as the update rate, for a gated layer before a call).

    The active input / hidden fractions are the share of channels kept per (step, sample) row,
    averaged over the last call's rows, when its backend recorded the selection
    (:func:`channel_usage`); otherwise (and before a call) the budgets ``keep_count / width``.
    """
    n_ih, n_hh = layer.trainable_counts()
    counts = _kept_counts(layer, trace)
    out = {
        "density_ih": n_ih / layer.mask_ih.numel(),
        "density_hh": n_hh / layer.mask_hh.numel(),
        "hidden_proportion": n_hh / (n_ih + n_hh),
        "active_input_fraction": layer.keep_count_input / layer.input_size,
        "active_hidden_fraction": layer.keep_count_hidden / layer.hidden_size,
        "update_rate": 1.0,
        "computed_fraction": 1.0,
    }
    if counts is not None:  # integer totals, so a kept budget reads exactly keep_count / width
        kept_in, kept_h, rows = counts
        out["active_input_fraction"] = int(kept_in.sum()) / (rows * layer.input_size)
        out["active_hidden_fraction"] = int(kept_h.sum()) / (rows * layer.hidden_size)
    if layer.update_gate is not None:
        count = open_count(trace)
        if count is None:
            out["update_rate"] = out["computed_fraction"] = float("nan")
        else:
            out["update_rate"] = float(count) / trace["n_elements"]
            out["computed_fraction"] = float(trace["computed"]) / trace["n_elements"]
    return out


def _cv_squared(importance: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation; 0 when all channels are used alike."""
    return importance.var(unbiased=False) / importance.mean().clamp_min(1e-12) ** 2


def _under_ceiling(layer: "SparseRecurrent", trace: dict[str, Any]) -> bool:
    """True when the update-rate penalty is a ceiling the last call's realised rate does not exceed:
    then the penalty is exactly 0 with a zero gradient, and its straight-through sum (a sigmoid over
    every switch, and its backward) need not be built."""
    if layer.update_rate_mode != "ceiling":
        return False
    count = open_count(trace)
    return count is not None and float(count) / trace["n_elements"] <= layer.target_update_rate


class _RateLoss(torch.autograd.Function):
    """``weight * penalty(count / n, target)`` from a call's open count ``count`` (no gradient) and its
    ``soft = sum(sigmoid(a))`` taken by the fused loops, as one node: the value and the gradient to
    ``soft`` of the straight-through sum ``count + soft - soft.detach()`` through
    :func:`~sparsernn.core.update_gates.rate_penalty`, in a few tensor operations and without reading
    the count on the host (a sync on an accelerator). Under a ceiling it is 0 with a zero gradient."""

    @staticmethod
    def forward(ctx, soft, count, n_elements: int, target: float, weight: float, ceiling: bool):
        excess = count.to(soft.dtype) / n_elements - target
        if ceiling:
            excess = excess.clamp_min(0.0)
        ctx.save_for_backward(excess)
        ctx.scale = 2.0 * weight / n_elements
        return excess * excess * weight

    @staticmethod
    def backward(ctx, grad):
        (excess,) = ctx.saved_tensors
        return grad * excess * ctx.scale, None, None, None, None, None


def aux_loss(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> torch.Tensor:
    """``update_rate_weight * penalty(rate, target) + router_balance_weight * CV^2(importance)``; the
    penalty is ``max(0, rate - target)^2`` (``update_rate_mode="ceiling"``) or ``(rate - target)^2``
    (``"set_point"``), :func:`~sparsernn.core.update_gates.rate_penalty`."""
    loss = layer.weight_hh.new_zeros(())
    if trace is None:
        return loss
    st_sum = None
    if layer.target_update_rate is not None:
        soft = trace.get("soft_sum")  # the fused loops' sum: the loss is one node (_RateLoss)
        fused = soft is not None and trace["open_st_sum"] is None and soft.requires_grad and torch.is_grad_enabled()
        # On a CPU reading the count is free, and a call under its ceiling builds nothing; on an
        # accelerator the fused sums' node applies the ceiling on the device, without a sync.
        under = (not fused or soft.device.type == "cpu") and _under_ceiling(layer, trace)
        if under:
            if torch.is_grad_enabled() and any(p.requires_grad for p in layer.gate.parameters()):
                # a constant 0 that still accepts .backward(), as the sum it stands for would
                loss = loss.requires_grad_()
        elif fused:
            loss = _RateLoss.apply(soft, open_count(trace), trace["n_elements"], layer.target_update_rate,
                                   layer.update_rate_weight, layer.update_rate_mode == "ceiling")
        else:
            st_sum = open_st_sum(trace)
    if st_sum is not None:
        rate = st_sum / trace["n_elements"]
        penalty = rate_penalty(rate, layer.target_update_rate, layer.update_rate_mode)
        loss = loss + layer.update_rate_weight * penalty
    if layer.router_balance_weight > 0 and trace["importance_h"] is not None:
        balance = _cv_squared(trace["importance_h"])
        if layer.keep_count_input < layer.input_size:
            balance = balance + _cv_squared(trace["importance_in"])
        loss = loss + layer.router_balance_weight * balance
    return loss
