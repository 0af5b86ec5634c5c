"""``train`` and ``evaluate``: one call from an env id to a trained, evaluated, saved agent."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from .callbacks import SparsityLoggerCallback
from .config import parse_policy_kwargs, parse_ppo_kwargs
from .ppo import SparseRecurrentPPO

#: Algorithms by name: ours, sb3-contrib's stock one, and feed-forward PPO.
ALGOS: dict[str, type[BaseAlgorithm]] = {"sparse": SparseRecurrentPPO, "recurrent": RecurrentPPO, "ppo": PPO}
DEFAULT_POLICIES = {"sparse": "SparseRecurrentPolicy", "recurrent": "MlpLstmPolicy", "ppo": "MlpPolicy"}
VECNORMALIZE_FILE = "vecnormalize.pkl"


@dataclass
class EvalResult:
    """Returns of deterministic evaluation episodes."""

    returns: list[float]
    lengths: list[int]
    successes: list[bool] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def success_rate(self) -> float | None:
        """Share of episodes whose last ``info`` had ``is_success`` true (None when the env does not say)."""
        return float(np.mean(self.successes)) if self.successes else None


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, its training env, and the final evaluation (if any)."""

    model: BaseAlgorithm
    env: VecEnv
    evaluation: EvalResult | None
    model_path: Path | None


def _import_envs() -> None:
    import sparsernn.envs  # noqa: F401  (registers the sparsernn/ ids)


def make_env(env_id: str, n_envs: int = 1, seed: int | None = None, env_kwargs: dict[str, Any] | None = None,
             normalize: bool | dict[str, Any] = False) -> VecEnv:
    """A ``DummyVecEnv`` of ``n_envs`` copies of ``env_id``, wrapped in ``VecNormalize`` if asked.

    ``normalize`` is a bool or ``VecNormalize`` keyword arguments.
    """
    _import_envs()
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    if normalize:
        env = VecNormalize(env, **(normalize if isinstance(normalize, dict) else {}))
    return env


def train(env_id: str, total_timesteps: int = 100_000, *, algo: str = "sparse", policy: str | type | None = None,
          policy_kwargs: dict[str, Any] | None = None, ppo_kwargs: dict[str, Any] | None = None, n_envs: int = 8,
          normalize: bool | dict[str, Any] = False, seed: int | None = None,
          env_kwargs: dict[str, Any] | None = None, tensorboard_log: str | None = None,
          save_dir: str | os.PathLike | None = None, checkpoint_freq: int = 0, eval_freq: int = 0,
          eval_episodes: int = 10, progress_bar: bool = False, device: str = "auto", verbose: int = 0) -> TrainResult:
    """Train an agent on ``env_id`` and evaluate it.

    Parameters
    ----------
    env_id : str
        Any registered Gymnasium id (the ``sparsernn/`` ids are registered here).
    total_timesteps : int
    algo : {"sparse", "recurrent", "ppo"}
        :class:`SparseRecurrentPPO`, sb3-contrib's ``RecurrentPPO`` or SB3's ``PPO``.
    policy : str or type, optional
        Default per ``algo``: ``SparseRecurrentPolicy``, ``MlpLstmPolicy``, ``MlpPolicy``.
    policy_kwargs, ppo_kwargs : dict, optional
        Strings are parsed as in :mod:`sparsernn.agents.config` (``"relu"``, ``"lin_1e-3"``).
    n_envs : int
    normalize : bool or dict
        Wrap the envs in ``VecNormalize`` (with these keyword arguments).
    seed : int, optional
    env_kwargs : dict, optional
        Passed to ``gym.make``.
    tensorboard_log : str, optional
        TensorBoard directory; sparsity statistics are logged under ``sparsity/``.
    save_dir : path, optional
        Where the final model (``model.zip``), ``vecnormalize.pkl``, checkpoints and the
        best model go.
    checkpoint_freq, eval_freq : int
        In environment steps (summed over envs); 0 turns them off. Both need ``save_dir``.
    eval_episodes : int
        Deterministic episodes of the final evaluation (0 skips it).
    progress_bar : bool
    device : str
    verbose : int

    Returns
    -------
    TrainResult
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {list(ALGOS)}; got {algo!r}")
    for name, value in (("checkpoint_freq", checkpoint_freq), ("eval_freq", eval_freq)):
        if value and save_dir is None:
            raise ValueError(f"{name}={value} needs save_dir to write to")
    env = make_env(env_id, n_envs, seed, env_kwargs, normalize)
    model = ALGOS[algo](policy or DEFAULT_POLICIES[algo], env, policy_kwargs=parse_policy_kwargs(policy_kwargs),
                        tensorboard_log=tensorboard_log, seed=seed, device=device, verbose=verbose,
                        **parse_ppo_kwargs(ppo_kwargs))
    callbacks = [SparsityLoggerCallback()]
    save_dir = Path(save_dir) if save_dir is not None else None
    if checkpoint_freq:
        callbacks.append(CheckpointCallback(max(checkpoint_freq // n_envs, 1), str(save_dir / "checkpoints"),
                                            save_vecnormalize=bool(normalize)))
    if eval_freq:
        eval_env = make_env(env_id, 1, None if seed is None else seed + 1000, env_kwargs, normalize)
        if isinstance(eval_env, VecNormalize):
            eval_env.training, eval_env.norm_reward = False, False
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=max(eval_episodes, 1),
                                      eval_freq=max(eval_freq // n_envs, 1), best_model_save_path=str(save_dir),
                                      log_path=str(save_dir), deterministic=True, verbose=verbose))
    model.learn(total_timesteps, callback=CallbackList(callbacks), progress_bar=progress_bar)
    model_path = None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        model_path = save_dir / "model.zip"
        model.save(model_path)
        if isinstance(env, VecNormalize):
            env.save(str(save_dir / VECNORMALIZE_FILE))
    evaluation = None
    if eval_episodes:
        evaluation = evaluate(model, env_id, eval_episodes, vec_normalize=env if normalize else None,
                              seed=None if seed is None else seed + 2000, env_kwargs=env_kwargs)
    return TrainResult(model, env, evaluation, model_path)


def load_model(path: str | os.PathLike, algo: str = "sparse", device: str = "auto") -> BaseAlgorithm:
    """Load a model saved by :func:`train` (or any ``model.save``) with the class named by ``algo``."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {list(ALGOS)}; got {algo!r}")
    return ALGOS[algo].load(path, device=device)


def evaluate(model: BaseAlgorithm, env_id: str, n_episodes: int = 10, *,
             vec_normalize: VecNormalize | str | os.PathLike | None = None, deterministic: bool = True,
             seed: int | None = None, env_kwargs: dict[str, Any] | None = None) -> EvalResult:
    """Run ``n_episodes`` episodes of ``model`` on a fresh ``env_id`` env.

    Parameters
    ----------
    model : BaseAlgorithm
    env_id : str
    n_episodes : int
    vec_normalize : VecNormalize or path, optional
        The training env's normalisation (a live ``VecNormalize`` or a saved
        ``vecnormalize.pkl``); it is applied frozen (no updates, raw rewards).
    deterministic : bool
    seed : int, optional
    env_kwargs : dict, optional
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int; got {n_episodes!r}")
    env = make_env(env_id, 1, seed, env_kwargs)
    if isinstance(vec_normalize, VecNormalize):
        normalized = VecNormalize(env, training=False, norm_reward=False)
        sync_envs_normalization(vec_normalize, normalized)
        env = normalized
    elif vec_normalize is not None:
        env = VecNormalize.load(str(vec_normalize), env)
        env.training, env.norm_reward = False, False
    successes: list[bool] = []

    def record_success(local_vars: dict[str, Any], _globals: dict[str, Any]) -> None:
        if local_vars["done"] and "is_success" in local_vars["info"]:
            successes.append(bool(local_vars["info"]["is_success"]))

    returns, lengths = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=deterministic,
                                       return_episode_rewards=True, callback=record_success)
    env.close()
    return EvalResult([float(r) for r in returns], [int(n) for n in lengths], successes)
