"""``MaskableSparseRecurrentPPO``: :class:`SparseRecurrentPPO` with sb3-contrib's invalid-action masking.

sb3-contrib has ``MaskablePPO`` (feed-forward, masks) and ``RecurrentPPO``
(memory, no masks), not both at once. This is the recurrent one with
``MaskablePPO``'s conventions: the masks come from the env's ``action_masks()``
method (or sb3-contrib's ``ActionMasker`` wrapper), read through
:func:`~sb3_contrib.common.maskable.utils.get_action_masks` before each step,
stored in the rollout (:class:`~sparsernn.agents.MaskableSequenceRolloutBuffer`),
applied when acting and in the loss (log-probabilities and entropies of the
masked distribution), ``learn(..., use_masking=True)``,
``predict(..., action_masks=...)``, and :func:`evaluate_policy` and
:class:`MaskableEvalCallback`, which read the masks of the evaluation env.
"""
from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common import evaluation
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sparsernn.policies import MaskableSparseRecurrentPolicy

from .buffers import MaskableSequenceRolloutBuffer
from .ppo import SparseRecurrentPPO


class MaskableSparseRecurrentPPO(SparseRecurrentPPO):
    """:class:`~sparsernn.agents.SparseRecurrentPPO` with invalid-action masking (sb3-contrib's ``MaskablePPO``
    conventions).

    Each step's masks (true = allowed) are read from the env before the policy acts
    (``env.action_masks()``, through ``VecEnv.env_method``), a masked-out action is
    never taken, the masks go into the rollout, and the update's log-probabilities
    and entropies are those of the masked distribution, as ``MaskablePPO``'s. The
    update is otherwise :class:`SparseRecurrentPPO`'s (whole-column minibatches,
    auxiliary loss).

    Parameters
    ----------
    policy : str or type
        ``"MaskableSparseRecurrentPolicy"`` (default; ``"SparseRecurrentPolicy"`` names
        the same class here, as ``"MlpPolicy"`` names the maskable policy in ``MaskablePPO``)
        or a subclass of :class:`~sparsernn.policies.MaskableSparseRecurrentPolicy`.
    env : VecEnv, gymnasium.Env or str
        With a ``Discrete``, ``MultiDiscrete`` or ``MultiBinary`` action space and an
        ``action_masks()`` method (or wrapped in ``ActionMasker``).
    **kwargs
        :class:`SparseRecurrentPPO` arguments (``use_sde`` must stay False).

    Examples
    --------
    >>> import sparsernn.envs
    >>> model = MaskableSparseRecurrentPPO("MaskableSparseRecurrentPolicy", "sparsernn/MaskedCueMemory-v0",
    ...                                    n_steps=32, batch_size=64, policy_kwargs=dict(hidden_size=16))
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MaskableSparseRecurrentPolicy": MaskableSparseRecurrentPolicy,
        "SparseRecurrentPolicy": MaskableSparseRecurrentPolicy}
    sequence_buffer_class = MaskableSequenceRolloutBuffer
    rollout_buffer: MaskableSequenceRolloutBuffer

    def __init__(self, policy: str | type = "MaskableSparseRecurrentPolicy", env: Any = None,
                 **kwargs: Any) -> None:
        if kwargs.get("use_sde"):
            raise ValueError("MaskableSparseRecurrentPPO does not take use_sde=True (gSDE is for Box actions; "
                             "masks are for Discrete, MultiDiscrete and MultiBinary ones)")
        self._use_masking = True
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.policy, MaskableSparseRecurrentPolicy):
            raise ValueError(f"the policy must subclass MaskableSparseRecurrentPolicy; got "
                             f"{type(self.policy).__name__}")

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1,
              tb_log_name: str = "MaskableSparseRecurrentPPO", reset_num_timesteps: bool = True,
              use_masking: bool = True, progress_bar: bool = False) -> MaskableSparseRecurrentPPO:
        """SB3's ``learn``; ``use_masking=False`` acts and learns without masks (every action allowed)."""
        if use_masking and self.env is not None and not is_masking_supported(self.env):
            raise ValueError("the environment does not support action masking (no action_masks() method); "
                             "wrap it in sb3_contrib.common.wrappers.ActionMasker or pass use_masking=False")
        self._use_masking = bool(use_masking)
        try:
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps,
                                 progress_bar)
        finally:
            self._use_masking = True

    def _evaluate_actions(self, data: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        return self.policy.evaluate_actions(data.observations, actions, data.lstm_states, data.episode_starts,
                                            action_masks=data.action_masks)

    # sb3-contrib 2.9.2's ``RecurrentPPO.collect_rollouts`` with what ``MaskablePPO.collect_rollouts`` adds:
    # the masks read before each step, passed to the policy and stored with the step. Upstream's has no
    # hook between reading the observation and calling the policy. (gSDE and Box clipping are left out:
    # masking takes neither.)
    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer,
                         n_rollout_steps: int) -> bool:
        """Fill ``rollout_buffer`` with ``n_rollout_steps`` steps per env, acting under the env's masks."""
        if not isinstance(rollout_buffer, MaskableSequenceRolloutBuffer):
            raise TypeError(f"the rollout buffer must be a MaskableSequenceRolloutBuffer; got "
                            f"{type(rollout_buffer).__name__}")
        use_masking = self._use_masking
        self.policy.set_training_mode(False)
        n_steps = 0
        action_masks = None
        rollout_buffer.reset()
        callback.on_rollout_start()
        lstm_states = deepcopy(self._last_lstm_states)
        while n_steps < n_rollout_steps:
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                episode_starts = th.tensor(self._last_episode_starts, dtype=th.float32, device=self.device)
                if use_masking:
                    action_masks = get_action_masks(env)
                actions, values, log_probs, lstm_states = self.policy(obs_tensor, lstm_states, episode_starts,
                                                                      action_masks=action_masks)
            actions = actions.cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            for idx, done_ in enumerate(dones):  # bootstrap at time limits (SB3 issue #633)
                if (done_ and infos[idx].get("terminal_observation") is not None
                        and infos[idx].get("TimeLimit.truncated", False)):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_lstm_state = (lstm_states.vf[0][:, idx:idx + 1, :].contiguous(),
                                               lstm_states.vf[1][:, idx:idx + 1, :].contiguous())
                        starts = th.tensor([False], dtype=th.float32, device=self.device)
                        terminal_value = self.policy.predict_values(terminal_obs, terminal_lstm_state, starts)[0]
                    rewards[idx] += self.gamma * terminal_value
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs,
                               lstm_states=self._last_lstm_states, action_masks=action_masks)
            self._last_obs = new_obs
            self._last_episode_starts = dones
            self._last_lstm_states = lstm_states
        with th.no_grad():  # the value of the last observation; no action is chosen, so no masks
            episode_starts = th.tensor(dones, dtype=th.float32, device=self.device)
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device), lstm_states.vf, episode_starts)
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.on_rollout_end()
        return True

    def predict(self, observation: np.ndarray | dict[str, np.ndarray], state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The policy's action and next state (``MaskablePPO.predict``'s arguments; ``action_masks=None``
        allows every action)."""
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)


class _MaskedPredictor:
    """``model`` whose ``predict`` passes the masks of ``env``, read at each call (what SB3's
    ``evaluate_policy`` calls); every other attribute is the model's."""

    def __init__(self, model: Any, env: VecEnv) -> None:
        self._model, self._masks_env = model, env

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        return self._model.predict(observation, state, episode_start, deterministic,
                                   action_masks=get_action_masks(self._masks_env))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class MaskableEvalCallback(EvalCallback):
    """SB3's ``EvalCallback`` whose evaluations act under the evaluation env's action masks.

    SB3's ``_on_step`` runs unchanged; for its duration the callback's model is seen through
    a wrapper whose ``predict`` passes the eval env's masks (the model itself is what is saved
    as ``best_model``). sb3-contrib's ``MaskableEvalCallback`` is not used: it evaluates through
    the maskable ``evaluate_policy`` that drops the recurrent state (see :func:`evaluate_policy`).
    """

    def _on_step(self) -> bool:
        model = self.model
        self.model = _MaskedPredictor(model, self.eval_env)
        try:
            return super()._on_step()
        finally:
            self.model = model


def evaluate_policy(model: Any, env: Any, n_eval_episodes: int = 10,
                    deterministic: bool = True, render: bool = False,
                    callback: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
                    reward_threshold: float | None = None, return_episode_rewards: bool = False,
                    warn: bool = True, use_masking: bool = True) -> Any:
    """SB3's ``evaluate_policy`` with the env's action masks passed to ``model.predict`` at every step.

    Same arguments and return values as sb3-contrib's maskable ``evaluate_policy``; ``model`` is
    anything with ``MaskablePPO``'s ``predict`` (this class, ``MaskablePPO``). Why not
    sb3-contrib's: in 2.9.2 its masked branch assigns the returned recurrent state to ``state``
    while passing ``states`` (always ``None``) to ``predict``, so a recurrent policy restarts
    from a zero state at every step; here SB3's own loop carries the state.
    """
    if not isinstance(env, VecEnv):
        env = DummyVecEnv([lambda: env])
    if use_masking:
        if not is_masking_supported(env):
            raise ValueError("the environment does not support action masking (no action_masks() method); "
                             "wrap it in sb3_contrib.common.wrappers.ActionMasker or pass use_masking=False")
        model = _MaskedPredictor(model, env)
    return evaluation.evaluate_policy(model, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic,
                                      render=render, callback=callback, reward_threshold=reward_threshold,
                                      return_episode_rewards=return_episode_rewards, warn=warn)
