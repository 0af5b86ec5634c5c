"""``SparseRecurrentPPO``: RecurrentPPO with the core layers' auxiliary losses and unpadded minibatches."""
from __future__ import annotations

import sys
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import HumanOutputFormat, Logger
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import explained_variance

from sparsernn.policies import SparseRecurrentPolicy

from .buffers import SequenceRolloutBuffer
from .callbacks import RouterKeepAnnealCallback


def folderless_logger(verbose: int = 0) -> Logger:
    """SB3's logger without a folder: stdout when ``verbose >= 1``, else nothing.

    SB3's default (``configure_logger`` with no ``tensorboard_log``) calls
    ``configure(None, ...)``, which creates an empty ``<tmp>/SB3-<time>`` folder
    on every ``learn()``; this one writes nowhere.
    """
    return Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if verbose >= 1 else [])


class FolderlessLogging:
    """Mixin for SB3 algorithms: with no ``tensorboard_log`` and no logger set, ``learn()`` logs through
    :func:`folderless_logger` (nothing is written outside the directories the user names)."""

    def _setup_learn(self, total_timesteps: int, callback: Any = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, Any]:
        """SB3's, with a :func:`folderless_logger` instead of SB3's ``<tmp>/SB3-<time>`` default."""
        if self._custom_logger or self.tensorboard_log is not None:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        self._logger = folderless_logger(self.verbose)
        self._custom_logger = True  # so that SB3 keeps it for this call ...
        try:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        finally:
            self._custom_logger = False  # ... and a later tensorboard_log still takes effect


class StockRecurrentPPO(FolderlessLogging, RecurrentPPO):
    """sb3-contrib's ``RecurrentPPO``, unchanged but for :class:`FolderlessLogging` (and the policy alias
    ``"SparseRecurrentPolicy"``, so that a variant can run our policy in upstream's training loop)."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        **RecurrentPPO.policy_aliases, "SparseRecurrentPolicy": SparseRecurrentPolicy}


class StockPPO(FolderlessLogging, PPO):
    """SB3's ``PPO``, unchanged but for :class:`FolderlessLogging`."""


class StockMaskablePPO(FolderlessLogging, MaskablePPO):
    """sb3-contrib's ``MaskablePPO`` (feed-forward, action masks), unchanged but for :class:`FolderlessLogging`."""


def _mean(values: th.Tensor, mask: th.Tensor | None) -> th.Tensor:
    """Mean over the real (unpadded) entries."""
    return values.mean() if mask is None else values[mask].mean()


class SparseRecurrentPPO(FolderlessLogging, RecurrentPPO):
    """:class:`~sb3_contrib.RecurrentPPO` that adds the policy's ``aux_loss()`` and batches whole sequences.

    Two changes, PPO's semantics otherwise unchanged (same advantages, clipped
    surrogate, value loss, entropy bonus, per-minibatch advantage
    normalisation, initial state of each sequence taken from the rollout):

    - the loss is ``policy + ent_coef * entropy + vf_coef * value + aux_loss_coef * aux``,
      ``aux`` being the policy's :meth:`~sparsernn.policies.SparseRecurrentPolicy.aux_loss`
      (update-rate target, router balance; zero when none is configured);
    - the rollout is kept as whole env columns (:class:`~sparsernn.agents.SequenceRolloutBuffer`):
      a minibatch is ``batch_size // chunk_length`` unpadded chunks of
      ``chunk_length`` steps with the episode resets inside, which the policy
      runs through its core in one call. ``batch_size`` must therefore be a
      multiple of ``chunk_length`` (see below). Dict observations
      are stored one array per key (the policy's default features extractor
      for them is SB3's ``CombinedExtractor``).

    Parameters
    ----------
    policy : str or type
        ``"SparseRecurrentPolicy"`` (default) or any sb3-contrib recurrent policy.
    env : VecEnv, gymnasium.Env or str
    aux_loss_coef : float >= 0
        Weight of the auxiliary loss.
    chunk_length : int, optional
        Steps per training sequence; must divide ``n_steps``. Shorter chunks
        truncate backpropagation through time at chunk starts. Default
        ``n_steps`` (whole columns), or ``batch_size`` when a minibatch is
        shorter than a column and divides it (sb3-contrib's settings such as the
        RL Zoo's PendulumNoVel, ``n_steps=1024, batch_size=128``, then run as
        they are: a minibatch is one 128-step chunk).
    router_anneal : float in [0, 1]
        Share of the training steps over which routed layers' keep is annealed from 1.0
        (dense) to their ``router_keep`` (:class:`~sparsernn.agents.RouterKeepAnnealCallback`);
        the final budget is exact. 0 routes at the final budget from the first update. Default
        0.25 (issue 12: Counting at hidden keep 0.1, 0.90 success against 0.70 without, dense
        0.82; CartPoleNoVel and RepeatPrevious unchanged). A policy without routed layers is
        not affected.
    **kwargs
        :class:`~sb3_contrib.RecurrentPPO` arguments.

    Examples
    --------
    >>> model = SparseRecurrentPPO("SparseRecurrentPolicy", "sparsernn/CartPoleNoVel-v1", n_steps=32,
    ...                            batch_size=64, policy_kwargs=dict(hidden_size=16, density_hh=0.25))
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        **RecurrentPPO.policy_aliases, "SparseRecurrentPolicy": SparseRecurrentPolicy}
    #: The whole-column buffer :meth:`_setup_model` builds.
    sequence_buffer_class: ClassVar[type[SequenceRolloutBuffer]] = SequenceRolloutBuffer

    def __init__(self, policy: str | type = "SparseRecurrentPolicy", env: Any = None, aux_loss_coef: float = 1.0,
                 chunk_length: int | None = None, router_anneal: float = 0.25, _init_setup_model: bool = True,
                 **kwargs: Any) -> None:
        if isinstance(aux_loss_coef, bool) or not isinstance(aux_loss_coef, (int, float)) or not aux_loss_coef >= 0:
            raise ValueError(f"aux_loss_coef must be a number >= 0; got {aux_loss_coef!r}")
        if isinstance(router_anneal, bool) or not isinstance(router_anneal, (int, float)) \
                or not 0 <= router_anneal <= 1:
            raise ValueError(f"router_anneal must be a number in [0, 1]; got {router_anneal!r}")
        self.aux_loss_coef = float(aux_loss_coef)
        self.router_anneal = float(router_anneal)
        self.chunk_length = chunk_length
        super().__init__(policy, env, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        old = self.rollout_buffer
        chunk_length = self.chunk_length
        if chunk_length is None and self.batch_size < self.n_steps and self.n_steps % self.batch_size == 0:
            chunk_length = self.batch_size  # a minibatch shorter than a column: one chunk of it
        self.rollout_buffer = self.sequence_buffer_class(
            self.n_steps, self.observation_space, self.action_space, old.hidden_state_shape, self.device,
            gae_lambda=self.gae_lambda, gamma=self.gamma, n_envs=self.n_envs, chunk_length=chunk_length)
        length = self.rollout_buffer.chunk_length
        if self.batch_size % length:
            raise ValueError(f"batch_size must be a multiple of chunk_length (whole sequences per minibatch); "
                             f"got batch_size={self.batch_size}, chunk_length={length} (n_steps={self.n_steps})")

    def _init_callback(self, callback: Any, progress_bar: bool = False) -> BaseCallback:
        """SB3's, with :class:`~sparsernn.agents.RouterKeepAnnealCallback` first when ``router_anneal > 0``."""
        if self.router_anneal > 0:
            if isinstance(callback, list):
                callback = CallbackList(callback)
            if callback is not None and not isinstance(callback, BaseCallback):
                callback = ConvertCallback(callback)
            callback = CallbackList([RouterKeepAnnealCallback(self.router_anneal)] + ([callback] if callback else []))
        return super()._init_callback(callback, progress_bar)

    def _evaluate_actions(self, data: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probabilities and entropies of a minibatch's ``actions`` (the hook a subclass
        extends to pass more of the minibatch to the policy)."""
        return self.policy.evaluate_actions(data.observations, actions, data.lstm_states, data.episode_starts)

    def _aux_loss(self) -> th.Tensor | None:
        aux = getattr(self.policy, "aux_loss", None)
        return aux() if aux is not None else None

    # A copy of sb3-contrib 2.9.2's ``RecurrentPPO.train`` (sb3_contrib/ppo_recurrent/ppo_recurrent.py),
    # pinned by tests/agents/test_sequence_buffer.py: with no aux term the parameters after one call are
    # bit-identical to upstream's on the same minibatches, for whichever sb3-contrib is installed.
    # Why a copy: upstream's ``train`` has no hook through which a term can join ``loss`` before
    # ``loss.backward()`` and the gradient clipping (``evaluate_actions`` returns only the three PPO
    # terms; a second backward from an optimizer wrapper would traverse the recurrent graph twice and
    # not equal upstream's gradient bit for bit). Also needed: our unpadded minibatches carry
    # ``mask=None`` (upstream indexes each term by a mask: a copy and, on CUDA, a sync each), and the
    # logged scalars come back in one device-to-host transfer instead of five ``.item()`` calls.
    def train(self) -> None:
        """One PPO update on the collected rollout (sb3-contrib's, plus the auxiliary loss)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        entropy_losses, pg_losses, value_losses, clip_fractions, aux_losses = [], [], [], [], []
        continue_training = True
        parameters = list(self.policy.parameters())  # walking the module tree per minibatch costs ~45 us
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                actions = data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = data.actions.long().flatten()
                mask = None if data.mask is None else data.mask > 1e-8
                values, log_prob, entropy = self._evaluate_actions(data, actions)
                values = values.flatten()
                advantages = data.advantages
                if self.normalize_advantage:
                    real = advantages if mask is None else advantages[mask]
                    advantages = (advantages - real.mean()) / (real.std() + 1e-8)
                ratio = th.exp(log_prob - data.old_log_prob)
                policy_loss = -_mean(th.min(advantages * ratio,
                                            advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)), mask)
                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = data.old_values + th.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
                value_loss = _mean((data.returns - values_pred) ** 2, mask)
                entropy_loss = -_mean(-log_prob if entropy is None else entropy, mask)
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                aux = self._aux_loss()
                if aux is not None:
                    loss = loss + self.aux_loss_coef * aux
                with th.no_grad():
                    log_ratio = log_prob - data.old_log_prob
                    approx_kl = _mean((th.exp(log_ratio) - 1) - log_ratio, mask)
                    clip_fraction = _mean((th.abs(ratio - 1) > clip_range).float(), mask)
                    # One device-to-host transfer for all the logged scalars.
                    scalars = th.stack([policy_loss, value_loss, entropy_loss, approx_kl, clip_fraction,
                                        aux if aux is not None else th.zeros_like(policy_loss)]).cpu().numpy()
                pg_losses.append(scalars[0])
                value_losses.append(scalars[1])
                entropy_losses.append(scalars[2])
                approx_kl_divs.append(scalars[3])
                clip_fractions.append(scalars[4])
                aux_losses.append(scalars[5])
                if self.target_kl is not None and scalars[3] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {scalars[3]:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        self._record_train_logs(entropy_losses, pg_losses, value_losses, approx_kl_divs, clip_fractions,
                                aux_losses, loss, clip_range, clip_range_vf)

    def _record_train_logs(self, entropy_losses, pg_losses, value_losses, approx_kl_divs, clip_fractions,
                           aux_losses, loss, clip_range, clip_range_vf) -> None:
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/aux_loss", np.mean(aux_losses))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
