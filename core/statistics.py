"""Per-call statistics and auxiliary losses of a :class:`SparseRecurrent`.

Both backends hand back the same *trace* (see :func:`make_trace`), so the
statistics and losses do not depend on which backend ran.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .layer import SparseRecurrent


def make_trace(open_counts: list[torch.Tensor], open_st_sums: list[torch.Tensor],
               importance_in: list[torch.Tensor], importance_h: list[torch.Tensor], n_elements: int) -> dict[str, Any]:
    """Reduce per-step records to the trace of one call.

    Parameters
    ----------
    open_counts : per step, the number of open switches (scalar, no gradient)
    open_st_sums : per step, the straight-through sum of switches (scalar with gradient)
    importance_in, importance_h : per step, ``sigmoid(scores).sum(0)`` of shape (I,) / (H,)
    n_elements : ``T * B * H``, the number of switches of the call
    """
    def total(items):
        return torch.stack(items).sum(0) if items else None

    return {"open_count": total(open_counts), "open_st_sum": total(open_st_sums),
            "importance_in": total(importance_in), "importance_h": total(importance_h),
            "n_elements": n_elements}


def layer_statistics(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> dict[str, float]:
    """Realised densities, hidden proportion, active fractions and the last call's update rate."""
    n_ih, n_hh = layer.trainable_counts()
    out = {
        "density_ih": n_ih / layer.mask_ih.numel(),
        "density_hh": n_hh / layer.mask_hh.numel(),
        "hidden_proportion": n_hh / (n_ih + n_hh),
        "active_input_fraction": layer.keep_count_input / layer.input_size,
        "active_hidden_fraction": layer.keep_count_hidden / layer.hidden_size,
        "update_rate": 1.0,
    }
    if layer.update_gate is not None:
        if trace is None or trace["open_count"] is None:
            out["update_rate"] = float("nan")
        else:
            out["update_rate"] = float(trace["open_count"]) / trace["n_elements"]
    return out


def _cv_squared(importance: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation; 0 when all channels are used alike."""
    return importance.var(unbiased=False) / importance.mean().clamp_min(1e-12) ** 2


def aux_loss(layer: "SparseRecurrent", trace: dict[str, Any] | None) -> torch.Tensor:
    """``update_rate_weight * (rate - target)^2 + router_balance_weight * CV^2(importance)``."""
    loss = layer.weight_hh.new_zeros(())
    if trace is None:
        return loss
    if layer.target_update_rate is not None and trace["open_st_sum"] is not None:
        rate = trace["open_st_sum"] / trace["n_elements"]
        loss = loss + layer.update_rate_weight * (rate - layer.target_update_rate) ** 2
    if layer.router_balance_weight > 0 and trace["importance_h"] is not None:
        balance = _cv_squared(trace["importance_h"])
        if layer.keep_count_input < layer.input_size:
            balance = balance + _cv_squared(trace["importance_in"])
        loss = loss + layer.router_balance_weight * balance
    return loss
