"""Samples, log-probabilities and entropies of SB3's two common action distributions, computed directly.

SB3 builds a ``torch.distributions`` object on every call (argument validation,
a ``logsumexp`` normalisation, sample validation), which at RL's batch sizes
costs several times the arithmetic: about 250 us per acting step for
``Categorical`` on a 2-core CPU against about 35 us here. For the distributions
of ``Discrete`` and ``Box`` action spaces (:class:`CategoricalDistribution`,
:class:`DiagGaussianDistribution`) these functions compute the same quantities
in a few ops, drawing from torch's generator as ``torch.distributions`` does;
for any other distribution (``MultiDiscrete``, ``MultiBinary``, gSDE,
squashed Gaussian) they use SB3's own.

sb3-contrib's maskable distributions (:class:`MaskableCategoricalDistribution`,
:class:`MaskableMultiCategoricalDistribution` and its ``MultiBinary`` subclass)
are computed directly too, with their masking math: a masked-out logit is
replaced by ``-1e8`` (probability 0 after the softmax) and contributes 0 to the
entropy. ``masks`` (bool-like, ``(N, sum of the action dims)``, true = allowed)
may only be given for those distributions; ``None`` leaves every action allowed.

Shapes: ``latent_pi (N, latent_dim)``; actions ``(N,)`` (Discrete) or
``(N, action_dim)`` (Box); log-probabilities and entropies ``(N,)``.
"""
from __future__ import annotations

import math

import torch
from sb3_contrib.common.maskable.distributions import (MaskableCategoricalDistribution,
                                                       MaskableMultiCategoricalDistribution)
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: sb3-contrib's logit for a masked-out action (``MaskableCategorical.apply_masking``).
MASKED_LOGIT = -1e8


def _kind(policy: ActorCriticPolicy, masks: torch.Tensor | None = None) -> str | None:
    """``"categorical"``, ``"multicategorical"`` (maskable only), ``"gaussian"`` or None (use SB3's
    distribution). Exact types: the squashed Gaussian and gSDE subclass the Gaussian and differ from it."""
    dist = policy.action_dist
    if isinstance(dist, MaskableMultiCategoricalDistribution):  # also MaskableBernoulliDistribution
        return "multicategorical"
    if isinstance(dist, MaskableCategoricalDistribution):
        return "categorical"
    if masks is not None:
        raise TypeError(f"action masks need one of sb3-contrib's maskable distributions; the policy's is "
                        f"{type(dist).__name__} (use MaskableSparseRecurrentPolicy)")
    kind = type(dist)
    if kind is CategoricalDistribution:
        return "categorical"
    if kind is DiagGaussianDistribution:
        return "gaussian"
    return None


def _splits(policy: ActorCriticPolicy, kind: str, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The logits per categorical sub-space (one for ``Discrete``)."""
    return (params,) if kind == "categorical" else torch.split(params, list(policy.action_dist.action_dims), dim=1)


def _masked_log_softmax(params: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """``log_softmax`` over the allowed logits (masked-out ones set to :data:`MASKED_LOGIT` first)."""
    if masks is not None:
        params = torch.where(masks, params, torch.tensor(MASKED_LOGIT, dtype=params.dtype, device=params.device))
    return torch.log_softmax(params, -1)


def _as_masks(masks: torch.Tensor | None, params: torch.Tensor) -> torch.Tensor | None:
    """``masks`` as a bool tensor shaped like ``params`` (as ``MaskableCategorical`` reshapes them)."""
    if masks is None:
        return None
    masks = torch.as_tensor(masks, dtype=torch.bool, device=params.device)
    if masks.numel() != params.numel():
        raise ValueError(f"action masks must hold {params.shape[-1]} entries per row for {params.shape[0]} rows "
                         f"(the logits' shape {tuple(params.shape)}); got shape {tuple(masks.shape)}")
    return masks.reshape(params.shape)


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the sub-spaces, as sb3-contrib's ``stack(...).sum(dim=1)`` (the term itself for one)."""
    return terms[0] if len(terms) == 1 else torch.stack(terms, dim=1).sum(dim=1)


def _categorical_entropy(log_p: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """``-sum p log p``; masked-out actions contribute 0 (as ``MaskableCategorical.entropy``)."""
    p_log_p = log_p.exp() * log_p
    if masks is not None:
        p_log_p = torch.where(masks, p_log_p, torch.zeros((), dtype=p_log_p.dtype, device=p_log_p.device))
    return -p_log_p.sum(-1)


def _gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """``log N(actions; mean, exp(log_std)^2)`` summed over the action dimensions."""
    z = (actions - mean) * torch.exp(-log_std)
    return -(0.5 * z * z + log_std + _HALF_LOG_2PI).sum(-1)


def _action_params(policy: ActorCriticPolicy, latent_pi: torch.Tensor, kind: str) -> torch.Tensor:
    """``action_net(latent_pi)``: logits or Gaussian means. NaN raises, as SB3's validated
    distributions do (a diverged policy should stop, not act on NaN)."""
    params = policy.action_net(latent_pi)
    if torch.isnan(params).any():
        name = "Gaussian means" if kind == "gaussian" else "logits"
        raise ValueError(f"the policy's action {name} contain NaN (shape {tuple(params.shape)}); "
                         f"training has diverged or the observations contain NaN")
    return params


def sample_actions(policy: ActorCriticPolicy, latent_pi: torch.Tensor, deterministic: bool = False,
                   masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions and their log-probabilities, as ``distribution.get_actions`` then ``log_prob``.

    Returns ``actions`` (``(N,)`` int64 for Discrete, ``(N, action_dim)`` for Box, MultiDiscrete and
    MultiBinary) and ``log_prob (N,)``. ``masks``: see the module's docstring.
    """
    kind = _kind(policy, masks)
    if kind is None:
        distribution = policy._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, distribution.log_prob(actions)
    params = _action_params(policy, latent_pi, kind)
    if kind in ("categorical", "multicategorical"):
        masks = _as_masks(masks, params)
        logit_splits = _splits(policy, kind, params)
        mask_splits = (None,) * len(logit_splits) if masks is None else _splits(policy, kind, masks)
        actions, log_probs = [], []
        for logits, mask in zip(logit_splits, mask_splits):
            log_p = _masked_log_softmax(logits, mask)
            if deterministic:
                action = log_p.argmax(-1)
            else:  # as Categorical.sample: one multinomial draw per row from the probabilities
                action = torch.multinomial(log_p.exp(), 1, True).squeeze(-1)
            actions.append(action)
            log_probs.append(log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1))
        return (actions[0] if kind == "categorical" else torch.stack(actions, dim=1)), _total(log_probs)
    log_std = policy.log_std
    if deterministic:
        actions = params
    else:  # as Normal.rsample: mean + standard normal noise * std
        actions = params + torch.empty_like(params).normal_() * log_std.exp()
    return actions, _gaussian_log_prob(actions, params, log_std)


def log_prob_and_entropy(policy: ActorCriticPolicy, latent_pi: torch.Tensor, actions: torch.Tensor,
                         masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_prob (N,)`` of ``actions`` and the entropy ``(N,)`` (None where SB3's distribution has none).

    ``masks``: see the module's docstring."""
    kind = _kind(policy, masks)
    if kind is None:
        distribution = policy._get_action_dist_from_latent(latent_pi)
        return distribution.log_prob(actions), distribution.entropy()
    params = _action_params(policy, latent_pi, kind)
    if kind in ("categorical", "multicategorical"):
        masks = _as_masks(masks, params)
        logit_splits = _splits(policy, kind, params)
        mask_splits = (None,) * len(logit_splits) if masks is None else _splits(policy, kind, masks)
        actions = actions.long().reshape(params.shape[0], len(logit_splits))
        log_probs, entropies = [], []
        for k, (logits, mask) in enumerate(zip(logit_splits, mask_splits)):
            log_p = _masked_log_softmax(logits, mask)
            log_probs.append(log_p.gather(-1, actions[:, k:k + 1]).squeeze(-1))
            entropies.append(_categorical_entropy(log_p, mask))
        return _total(log_probs), _total(entropies)
    log_std = policy.log_std
    log_prob = _gaussian_log_prob(actions.reshape(params.shape), params, log_std)
    entropy = (log_std + (0.5 + _HALF_LOG_2PI)).sum().expand(params.shape[0])
    return log_prob, entropy
