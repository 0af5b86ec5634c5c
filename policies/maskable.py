"""``MaskableSparseRecurrentPolicy``: :class:`SparseRecurrentPolicy` with sb3-contrib's invalid-action masking."""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution, make_masked_proba_distribution
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule

from .action_heads import log_prob_and_entropy, sample_actions
from .sparse_recurrent import SparseRecurrentPolicy



def action_mask_dims(action_space: spaces.Space) -> int:
    """Entries of one action mask: one per choice of each sub-space, as sb3-contrib counts them
    (``n``, ``sum(nvec)``, ``2 * n``); a ``ValueError`` for spaces sb3-contrib does not mask."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary) and isinstance(action_space.n, (int, np.integer)):
        return 2 * int(action_space.n)
    raise ValueError(f"action masking needs a Discrete, MultiDiscrete or one-dimensional MultiBinary action "
                     f"space; got {action_space}")


class MaskableSparseRecurrentPolicy(SparseRecurrentPolicy):
    """:class:`~sparsernn.policies.SparseRecurrentPolicy` whose action distribution takes action masks.

    What sb3-contrib's ``MaskableActorCriticPolicy`` adds to ``ActorCriticPolicy``, added
    to the recurrent policy: the action distribution is sb3-contrib's maskable one
    (:func:`~sb3_contrib.common.maskable.distributions.make_masked_proba_distribution`),
    and :meth:`forward`, :meth:`evaluate_actions`, :meth:`get_distribution` and
    :meth:`predict` take ``action_masks`` (true = allowed; ``(n, sum of the action
    dims)``, one entry per choice of each sub-space, as sb3-contrib lays them out).
    A masked-out action gets logit ``-1e8``: it is never sampled, never the mode,
    and adds nothing to the entropy. ``action_masks=None`` allows every action.
    Samples, log-probabilities and entropies are computed directly
    (:mod:`~sparsernn.policies.action_heads`) with the same math as sb3-contrib's
    ``MaskableCategorical``.

    Action spaces: ``Discrete``, ``MultiDiscrete`` and ``MultiBinary`` (those
    sb3-contrib masks). Every other argument is :class:`SparseRecurrentPolicy`'s.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 *args: Any, **kwargs: Any) -> None:
        action_mask_dims(action_space)  # raises for a space without masks
        if kwargs.get("use_sde"):
            raise ValueError("action masking does not combine with gSDE (use_sde=True): gSDE is for Box actions")
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        """SB3's networks, then sb3-contrib's maskable distribution in place of SB3's. ``Discrete`` and
        ``MultiDiscrete`` keep the same ``action_net`` (so a seed gives the unmasked policy's weights);
        ``MultiBinary``'s gets two logits per bit where SB3's Bernoulli has one, built and initialised
        as SB3 builds its own."""
        super()._build(lr_schedule)
        self.action_dist = make_masked_proba_distribution(self.action_space)
        dist = self.action_dist
        n_logits = sum(dist.action_dims) if hasattr(dist, "action_dims") else dist.action_dim
        if self.action_net.out_features != n_logits:
            self.action_net = dist.proba_distribution_net(self.mlp_extractor.latent_dim_pi)
            if self.ortho_init:
                self.action_net.apply(partial(self.init_weights, gain=0.01))

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> MaskableDistribution:
        """sb3-contrib's maskable distribution over ``action_net(latent_pi)`` (no masks applied)."""
        return self.action_dist.proba_distribution(action_logits=self.action_net(latent_pi))

    def forward(self, obs: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor,
                deterministic: bool = False, action_masks: np.ndarray | torch.Tensor | None = None):
        """Actions (never a masked-out one), values, log-probabilities and new states."""
        latent_pi, latent_vf, states = self._latents(obs, lstm_states, episode_starts)
        actions, log_prob = sample_actions(self, latent_pi, deterministic, masks=action_masks)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent_vf), log_prob, states

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, lstm_states: RNNStates,
                         episode_starts: torch.Tensor, action_masks: np.ndarray | torch.Tensor | None = None):
        """Values, log-probabilities of ``actions`` and entropies under the masked distribution."""
        latent_pi, latent_vf, _ = self._latents(obs, lstm_states, episode_starts)
        log_prob, entropy = log_prob_and_entropy(self, latent_pi, actions, masks=action_masks)
        return self.value_net(latent_vf), log_prob, entropy

    def get_distribution(self, obs: torch.Tensor, lstm_states: tuple[torch.Tensor, torch.Tensor],
                         episode_starts: torch.Tensor, action_masks: np.ndarray | torch.Tensor | None = None):
        """sb3-contrib's maskable distribution (masks applied) and the new actor states."""
        distribution, states = super().get_distribution(obs, lstm_states, episode_starts)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution, states

    def _predict(self, observation: torch.Tensor, lstm_states: tuple[torch.Tensor, torch.Tensor],
                 episode_starts: torch.Tensor, deterministic: bool = False,
                 action_masks: np.ndarray | torch.Tensor | None = None):
        features = super(ActorCriticPolicy, self).extract_features(observation, self.pi_features_extractor)
        latent_pi, states = self._process_sequence(features, lstm_states, episode_starts, self.lstm_actor)
        actions, _ = sample_actions(self, self.mlp_extractor.forward_actor(latent_pi), deterministic,
                                    masks=action_masks)
        return actions, states

    # sb3-contrib's ``RecurrentActorCriticPolicy.predict`` (2.9.2) with ``action_masks`` passed on to
    # ``_predict``; upstream's has no argument through which they could reach the distribution.
    def predict(self, observation: np.ndarray | dict[str, np.ndarray], state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The action (none that ``action_masks`` forbids) and the next state, as sb3-contrib's ``predict``.

        ``action_masks``: ``(n_envs, mask_dims)`` or, for one unbatched observation, ``(mask_dims,)``.
        """
        self.set_training_mode(False)
        observation, vectorized_env = self.obs_to_tensor(observation)
        first = observation[next(iter(observation))] if isinstance(observation, dict) else observation
        n_envs = first.shape[0]
        if state is None:
            state = np.concatenate([np.zeros(self.lstm_hidden_state_shape) for _ in range(n_envs)], axis=1)
            state = (state, state)
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=bool)
        with torch.no_grad():
            states = (torch.tensor(state[0], dtype=torch.float32, device=self.device),
                      torch.tensor(state[1], dtype=torch.float32, device=self.device))
            episode_starts = torch.tensor(episode_start, dtype=torch.float32, device=self.device)
            actions, states = self._predict(observation, states, episode_starts, deterministic, action_masks)
            states = (states[0].cpu().numpy(), states[1].cpu().numpy())
        actions = actions.cpu().numpy().reshape((-1, *self.action_space.shape))
        if not vectorized_env:
            actions = actions.squeeze(axis=0)
        return actions, states
