"""The forecaster behind the selective-update detector, and its inference.

A core :class:`~sparsernn.core.SparseRecurrent` layer reads the normalised
observation ``u_t`` and a linear head reads ``[h_t, u_t]`` to predict the
distribution of the next observation, a Gaussian with mean ``mu_{t+1}`` and
variance ``var_{t+1}`` per channel. The head's ``u_t -> mu`` block starts as
the identity (a persistence forecast) so training only learns corrections.

The *surprise* of ``u_t`` is the Gaussian negative log-likelihood in excess of
its minimum for that forecast, averaged over channels::

    surprise_t = 0.5 * mean_c (u_t,c - mu_t,c)^2 / var_t,c        (>= 0)

:meth:`GaussianForecaster.readout` hands the head to core as a
:class:`~sparsernn.core.step_weights.GaussianReadout`, so core's inference
kernels (:class:`~sparsernn.core.inference.InferenceStepper`, which picks one
by core's rule) run the layer and the head together; :func:`forecast` is the
general torch path (the layer's fused loop, then the head). Both are tested
equal to the layer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..core import SparseRecurrent
from ..core.inference import fused_inference
from ..core.step_weights import GaussianReadout

LOG_VAR_RANGE = (-12.0, 8.0)
"""Clamp of the predicted log-variance (normalised units)."""


class GaussianForecaster(nn.Module):
    """Recurrent one-step-ahead Gaussian forecaster.

    Parameters
    ----------
    n_channels : int
        Width ``d`` of the series.
    hidden_size : int
    layer_options : dict
        Keyword arguments of :class:`~sparsernn.core.SparseRecurrent` (``cell``,
        densities, ``router_keep``, ``update_gate``, ``backend``, ...).
    min_variance : float
        Floor added to the predicted variance (normalised units), so a flat
        stretch of series cannot make the surprise infinite.
    seed : int
        Seeds the layer and the head.
    horizon : int, default 1
        Points forecast after each point (:mod:`~sparsernn.detectors.horizons`): the head has
        ``2 d horizon`` outputs, ``[mean_1 | ... | mean_K | log_var_1 | ... | log_var_K]``, and
        each horizon's mean starts as a persistence forecast.
    """

    def __init__(self, n_channels: int, hidden_size: int, layer_options: dict, min_variance: float,
                 seed: int, horizon: int = 1) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.horizon = int(horizon)
        self.min_variance = float(min_variance)
        self.layer = SparseRecurrent(n_channels, hidden_size, seed=seed, **layer_options)
        self.head = nn.Linear(hidden_size + n_channels, 2 * n_channels * self.horizon)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            bound = 0.1 / math.sqrt(hidden_size)
            self.head.weight.uniform_(-bound, bound, generator=gen)
            self.head.weight[:, hidden_size:] = 0.0
            for h in range(self.horizon):
                self.head.weight[h * n_channels:(h + 1) * n_channels, hidden_size:] = torch.eye(n_channels)
            self.head.bias.zero_()

    def predict(self, y: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forecast ``(mean, var)``, each of shape ``(T, B, d K)`` (``K = horizon``), of the ``K`` steps
        after each row.

        ``y``: layer output ``(T, B, H)``; ``u``: normalised inputs ``(T, B, d)``.
        """
        return self._distribution(self.head(torch.cat([y, u], dim=-1)))

    def _distribution(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = out.chunk(2, dim=-1)
        return mean, torch.exp(log_var.clamp(*LOG_VAR_RANGE)) + self.min_variance

    def predict_per_stream(self, y: torch.Tensor, u: torch.Tensor, params: dict[str, torch.Tensor]):
        """:meth:`predict` with each stream's own head: ``y (T, S, H)``, ``u (T, S, d)`` and ``params``
        holding ``"head.weight"`` ``(S, 2d, H + d)`` and ``"head.bias"`` ``(S, 2d)`` (named as
        ``named_parameters`` names them; other entries ignored). One batched product over the streams."""
        inputs = torch.cat([y, u], dim=-1).transpose(0, 1)  # (S, T, H + d)
        weight, bias = params["head.weight"], params["head.bias"]
        out = torch.baddbmm(bias.unsqueeze(1), inputs, weight.transpose(1, 2)).transpose(0, 1)
        return self._distribution(out)

    def readout(self) -> GaussianReadout:
        """The head as core's read-out contract (a copy): ``[h_t, u_t] -> [mean | log_var]``, the
        log-variance clamped to :data:`LOG_VAR_RANGE`, plus ``min_variance``."""
        return GaussianReadout(self.head.weight, self.head.bias, LOG_VAR_RANGE, self.min_variance)

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """``u (T, B, d)`` → ``mean (T, B, d)``, ``var (T, B, d)``, ``state (B, state_size)``
        through the layer itself (with gradient; used for training)."""
        y, state = self.layer(u, state)
        mean, var = self.predict(y, u)
        return mean, var, state


def surprise(u: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean_c (u - mean)^2 / var`` over the last (channel) axis."""
    return 0.5 * ((u - mean).square() / var).mean(-1)


def gaussian_nll(u: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant) — the training loss."""
    return 0.5 * (torch.log(var) + (u - mean).square() / var).mean()


def forecast(model: GaussianForecaster, u: torch.Tensor, state: torch.Tensor):
    """Forecasts of ``model`` over ``u (T, B, d)`` from ``state (B, state_size)``, without gradient.

    Returns ``mean (T, B, d)``, ``var (T, B, d)`` (forecasts of the step after
    each row) and the final state. Equal to ``model(u, state)`` up to float
    rounding: core's ``"fused"`` inference backend
    (:func:`~sparsernn.core.inference.fused_inference`), whatever the layer's ``backend``.
    """
    return fused_inference(model.layer, model.readout(), u, state)
