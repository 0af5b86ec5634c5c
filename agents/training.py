"""``train`` and ``evaluate``: one call from an env id to a trained, evaluated, saved agent."""
from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from .arguments import MODEL_FILE, as_count, as_seed, check_train_arguments, derived_seed
from .callbacks import SparsityLoggerCallback
from .config import parse_policy_kwargs, parse_ppo_kwargs
from .model_files import (AtomicCheckpointCallback, check_model_file, check_spaces, load_normalization,
                          normalization_path, reading_model, save_model, save_normalization)
from .ppo import SparseRecurrentPPO, StockMaskablePPO, StockPPO, StockRecurrentPPO
from .ppo_mask import MaskableEvalCallback, MaskableSparseRecurrentPPO
from .ppo_mask import evaluate_policy as evaluate_masked_policy

#: Algorithms by name: ours, ours with action masking, sb3-contrib's stock recurrent one, feed-forward PPO
#: and sb3-contrib's feed-forward MaskablePPO (the stock ones unchanged but for a logger that writes no
#: ``<tmp>/SB3-<time>`` folder when no ``tensorboard_log`` is given).
ALGOS: dict[str, type[BaseAlgorithm]] = {"sparse": SparseRecurrentPPO, "maskable": MaskableSparseRecurrentPPO,
                                         "recurrent": StockRecurrentPPO, "ppo": StockPPO,
                                         "ppo_mask": StockMaskablePPO}
DEFAULT_POLICIES = {"sparse": "SparseRecurrentPolicy", "maskable": "MaskableSparseRecurrentPolicy",
                    "recurrent": "MlpLstmPolicy", "ppo": "MlpPolicy", "ppo_mask": "MlpPolicy"}
#: The algorithms that act under the env's action masks (in training and in :func:`evaluate`).
MASKED_ALGOS = (MaskableSparseRecurrentPPO, MaskablePPO)


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
          eval_episodes: int = 10, progress_bar: bool = False, device: str = "auto", verbose: int = 0,
          overwrite: bool = False, resume: str | os.PathLike | None = None,
          eval_env_kwargs: dict[str, Any] | None = None) -> TrainResult:
    """Train an agent on ``env_id`` and evaluate it.

    Parameters
    ----------
    env_id : str
        Any registered Gymnasium id (the ``sparsernn/`` ids are registered here).
    total_timesteps : int >= 1
        Steps to train (with ``resume``: steps added to the checkpoint's count).
    algo : {"sparse", "maskable", "recurrent", "ppo", "ppo_mask"}
        :class:`SparseRecurrentPPO`, :class:`MaskableSparseRecurrentPPO` (action masks from the
        env's ``action_masks()``), sb3-contrib's ``RecurrentPPO``, SB3's ``PPO`` or sb3-contrib's
        ``MaskablePPO`` (feed-forward, masks).
    policy : str or type, optional
        Default per ``algo``: ``SparseRecurrentPolicy``, ``MaskableSparseRecurrentPolicy``,
        ``MlpLstmPolicy``, ``MlpPolicy``, ``MlpPolicy``.
    policy_kwargs, ppo_kwargs : dict, optional
        Strings are parsed as in :mod:`sparsernn.agents.config` (``"relu"``, ``"lin_1e-3"``).
    n_envs : int >= 1
    normalize : bool or dict
        Wrap the envs in ``VecNormalize`` (with these keyword arguments).
    seed : int in [0, 2**32), optional
    env_kwargs : dict, optional
        Passed to ``gym.make``.
    tensorboard_log : str, optional
        TensorBoard directory; sparsity statistics are logged under ``sparsity/``. Without
        it nothing is logged to disk.
    save_dir : path, optional
        Where the final model (``model.zip``), its normalisation statistics
        (``model.vecnormalize.json``), checkpoints and the best model go. A ``save_dir``
        that already holds ``model.zip`` is refused unless ``overwrite``.
    checkpoint_freq, eval_freq : int
        In environment steps (summed over envs); 0 turns them off. Both need ``save_dir``.
    eval_episodes : int >= 0
        Deterministic episodes of the final evaluation (0 skips it).
    progress_bar : bool
    device : str
    verbose : int >= 0
    overwrite : bool
        Replace the ``model.zip`` of an existing ``save_dir``.
    resume : path, optional
        A saved model (``model.zip`` or a checkpoint) to continue: its weights,
        optimiser, hyperparameters and step count (``num_timesteps``) continue, and
        so do its normalisation statistics (the JSON beside it). ``policy``,
        ``policy_kwargs`` and ``ppo_kwargs`` are then the saved model's.
    eval_env_kwargs : dict, optional
        ``gym.make`` keyword arguments of the evaluation envs (the final one and ``eval_freq``'s), where
        they should differ from training's: e.g. teach copy/recall at ``{"gap": 200}`` and evaluate at
        ``{"gap": 5000}``. Default: ``env_kwargs``. The spaces must be the same.

    All arguments are checked before any env or model is built.

    Returns
    -------
    TrainResult
    """
    args = check_train_arguments(dict(locals()), ALGOS)
    seed, n_envs, save_dir, resume = args["seed"], args["n_envs"], args["save_dir"], args["resume"]
    env_kwargs, eval_episodes = args["env_kwargs"], args["eval_episodes"]
    eval_env_kwargs = env_kwargs if args["eval_env_kwargs"] is None else args["eval_env_kwargs"]
    if resume is None:
        env = make_env(env_id, n_envs, seed, env_kwargs, normalize)
        model = ALGOS[algo](policy or DEFAULT_POLICIES[algo], env,
                            policy_kwargs=parse_policy_kwargs(args["policy_kwargs"]), tensorboard_log=tensorboard_log,
                            seed=seed, device=device, verbose=args["verbose"],
                            **parse_ppo_kwargs(args["ppo_kwargs"]))
    else:
        model, env = _resume(resume, env_id, algo, n_envs, seed, env_kwargs, normalize, device,
                             tensorboard_log, args["verbose"])
        if policy is not None or args["policy_kwargs"] or args["ppo_kwargs"]:
            warnings.warn(f"resuming from '{resume}': the saved model's policy and PPO settings are used; "
                          "policy, policy_kwargs and ppo_kwargs are ignored", stacklevel=2)
    callbacks = [SparsityLoggerCallback()]
    normalized = isinstance(env, VecNormalize)
    if args["checkpoint_freq"]:
        callbacks.append(AtomicCheckpointCallback(max(args["checkpoint_freq"] // n_envs, 1),
                                                  str(save_dir / "checkpoints")))
    if args["eval_freq"]:
        eval_env = make_env(env_id, 1, derived_seed(seed, 1000), eval_env_kwargs, normalize or normalized)
        if isinstance(eval_env, VecNormalize):
            eval_env.training, eval_env.norm_reward = False, False
        eval_callback = MaskableEvalCallback if isinstance(model, MASKED_ALGOS) else EvalCallback
        callbacks.append(eval_callback(eval_env, n_eval_episodes=max(eval_episodes, 1),
                                       eval_freq=max(args["eval_freq"] // n_envs, 1),
                                       best_model_save_path=str(save_dir), log_path=str(save_dir),
                                       deterministic=True, verbose=args["verbose"]))
    model.learn(args["total_timesteps"], callback=CallbackList(callbacks), progress_bar=args["progress_bar"],
                reset_num_timesteps=resume is None)
    model_path = None
    if save_dir is not None:
        model_path = save_model(model, save_dir / MODEL_FILE)
        stats = normalization_path(model_path)
        if normalized:
            save_normalization(env, stats)
        elif stats.exists():
            stats.unlink()  # an overwritten run's statistics must not be applied to this model
    evaluation = None
    if eval_episodes:
        evaluation = evaluate(model, env_id, eval_episodes, vec_normalize=env if normalized else None,
                              seed=derived_seed(seed, 2000), env_kwargs=eval_env_kwargs)
    return TrainResult(model, env, evaluation, model_path)


def check_train_call(**kwargs: Any) -> dict[str, Any]:
    """Check keyword arguments of :func:`train` (its defaults filled in) without training; returns them checked."""
    bound = inspect.signature(train).bind(**kwargs)
    bound.apply_defaults()
    return check_train_arguments(bound.arguments, ALGOS)


def _resume(path: Path, env_id: str, algo: str, n_envs: int, seed: int | None, env_kwargs: dict[str, Any],
            normalize: bool | dict[str, Any], device: str, tensorboard_log: str | None,
            verbose: int) -> tuple[BaseAlgorithm, VecEnv]:
    """The model at ``path`` on a fresh ``env_id`` env, with the normalisation statistics saved beside it."""
    stats = normalization_path(path)
    if normalize and not stats.is_file():
        raise FileNotFoundError(f"normalize is set but the checkpoint '{path}' has no statistics at '{stats}'")
    env = make_env(env_id, n_envs, seed, env_kwargs)
    if stats.is_file():
        env = load_normalization(stats, env, training=True)
    model = load_model(path, algo, device, env=env, tensorboard_log=tensorboard_log, verbose=verbose)
    if seed is not None:
        model.set_random_seed(seed)
    return model, env


def load_model(path: str | os.PathLike, algo: str = "sparse", device: str = "auto", env: VecEnv | None = None,
               **kwargs: Any) -> BaseAlgorithm:
    """Load a model saved by :func:`train` (or any ``model.save``) with the class named by ``algo``.

    A missing, empty, truncated or corrupted file raises :class:`~sparsernn.agents.model_files.ModelFileError`
    (a ``ValueError``; ``FileNotFoundError`` when absent) naming the file and what is wrong.
    ``env`` and ``kwargs`` go to SB3's ``load``.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {list(ALGOS)}; got {algo!r}")
    path = check_model_file(path)
    with reading_model(path):
        return ALGOS[algo].load(path, env=env, device=device, **kwargs)


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
        The training env's normalisation (a live ``VecNormalize`` or the JSON file
        :func:`train` writes beside the model); it is applied frozen (no updates, raw
        rewards). SB3 pickles (``vecnormalize.pkl``) are not read.

    The env's observation and action spaces must equal the model's (``ValueError`` naming both).
    A :class:`MaskableSparseRecurrentPPO` or ``MaskablePPO`` acts under the env's action masks
    (:func:`sparsernn.agents.ppo_mask.evaluate_policy`).
    deterministic : bool
    seed : int in [0, 2**32), optional
    env_kwargs : dict, optional
    """
    n_episodes = as_count("n_episodes", n_episodes, 1)
    seed = as_seed("seed", seed)
    if not (vec_normalize is None or isinstance(vec_normalize, (VecNormalize, str, os.PathLike))):
        raise TypeError(f"vec_normalize must be a VecNormalize, a path or None; got {type(vec_normalize).__name__}")
    env = make_env(env_id, 1, seed, env_kwargs)
    try:
        check_spaces(model, env, env_id)
        if isinstance(vec_normalize, VecNormalize):
            normalized = VecNormalize(env, training=False, norm_reward=False)
            sync_envs_normalization(vec_normalize, normalized)
            env = normalized
        elif vec_normalize is not None:
            env = load_normalization(vec_normalize, env, training=False)
    except BaseException:
        env.close()
        raise
    successes: list[bool] = []

    def record_success(local_vars: dict[str, Any], _globals: dict[str, Any]) -> None:
        if local_vars["done"] and "is_success" in local_vars["info"]:
            successes.append(bool(local_vars["info"]["is_success"]))

    evaluator = evaluate_masked_policy if isinstance(model, MASKED_ALGOS) else evaluate_policy
    returns, lengths = evaluator(model, env, n_eval_episodes=n_episodes, deterministic=deterministic,
                                 return_episode_rewards=True, callback=record_success)
    env.close()
    return EvalResult([float(r) for r in returns], [int(n) for n in lengths], successes)
