"""``python -m sparsernn.agents sweep``: an Optuna study over SparseRecurrentPPO's layer and PPO options.

Examples::

    # 20 trials in one process on the embedded default storage (runs/sweeps/sweeps.db, SQLite)
    python -m sparsernn.agents sweep --config agents/configs/cartpole_novel.yaml --n-trials 20
    # the same study from two worker processes, then from another machine (PostgreSQL; docs/rl.md)
    python -m sparsernn.agents sweep --config agents/configs/cartpole_novel.yaml --workers 2 --n-trials 10
    python -m sparsernn.agents sweep --config agents/configs/cartpole_novel.yaml --n-trials 10 --seed 7 \\
        --storage postgresql://user:pw@db-host/sweeps --study-name cartpole-layer
    # the layer by budget, one option pinned, a grid over the hidden proportion, the rest the config's
    python -m sparsernn.agents sweep --config agents/configs/counting.yaml --space budget \\
        --fix param_budget=4096 cell=gru --sampler grid --grid hidden_proportion=0.1,0.5,0.9

A trial samples :mod:`sparsernn.agents.sweep_space` (``--params`` restricts what is drawn, ``--fix`` pins
values) on top of the config's settings, trains ``total_timesteps`` steps and reports the mean return of
``--eval-episodes`` deterministic episodes after each of ``--n-evaluations`` equal parts of training to the
trial; the median pruner stops trials below the median of earlier ones at the same report. The value is the
last report.
At the end the study's trial counts and best trial are printed as JSON and every trial is written
(``--out``, CSV or JSON; Optuna's ``trials_dataframe``).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, sync_envs_normalization

from .arguments import as_seed, derived_seed
from .config import load_config, parse_policy_kwargs, parse_ppo_kwargs
from .sweep import (PRUNERS, SAMPLERS, best_summary, make_pruner, make_sampler, make_storage, open_study,
                    parse_assignments, run_worker, write_trials)
from .sweep_space import LAYER_PARAMS, PPO_PARAMS, SPACES, check_space, convert, space_params, suggest


class TrialEvalCallback(BaseCallback):
    """Evaluate ``n_evaluations`` times (every ``eval_freq`` calls, and at the end if short), report each mean
    return to ``trial`` and stop training when the trial's pruner says so (``is_pruned``)."""

    def __init__(self, eval_env: VecEnv, trial: optuna.Trial, n_eval_episodes: int, eval_freq: int,
                 n_evaluations: int) -> None:
        super().__init__()
        self.eval_env, self.trial, self.n_eval_episodes = eval_env, trial, n_eval_episodes
        self.eval_freq, self.n_evaluations = eval_freq, n_evaluations
        self.eval_idx, self.last_mean_reward, self.is_pruned = 0, float("-inf"), False

    def _evaluate(self) -> bool:
        if isinstance(self.eval_env, VecNormalize):
            sync_envs_normalization(self.training_env, self.eval_env)
        returns, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_eval_episodes,
                                     deterministic=True, return_episode_rewards=True)
        self.last_mean_reward = float(np.mean(returns))
        self.eval_idx += 1
        self.trial.report(self.last_mean_reward, self.eval_idx)
        self.is_pruned = self.trial.should_prune()
        return not self.is_pruned

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0 and self.eval_idx < self.n_evaluations:
            return self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.is_pruned and self.eval_idx < self.n_evaluations:
            self._evaluate()


def batch_problem(ppo_kwargs: dict[str, Any], n_envs: int) -> str | None:
    """What is wrong with a trial's rollout and minibatch sizes (``None`` if nothing): ``batch_size`` must be a
    multiple of ``chunk_length`` (default ``n_steps``, or ``batch_size`` where that divides it) and at most
    ``n_steps * n_envs`` (RecurrentPPO's
    defaults: ``n_steps`` 128, ``batch_size`` 128). The sampler never draws such sizes; a config or ``--fix``
    can give them, and then every trial would fail the same way."""
    n_steps, batch = ppo_kwargs.get("n_steps", 128), ppo_kwargs.get("batch_size", 128)
    chunk = ppo_kwargs.get("chunk_length") or (batch if batch < n_steps and n_steps % batch == 0 else n_steps)
    if batch % chunk or batch > n_steps * n_envs:
        return (f"batch_size={batch} must be a multiple of chunk_length={chunk} and at most n_steps * n_envs = "
                f"{n_steps} * {n_envs}; change the config, --n-envs, --fix or --params")
    return None


def rl_objective(config: dict[str, Any], space: str = "layer", n_evaluations: int = 4, eval_episodes: int = 5,
                 seed: int | None = 0, device: str = "cpu",
                 params: list[str] | None = None) -> Callable[[optuna.Trial], float]:
    """The objective of one trial on ``config`` (a :func:`~sparsernn.agents.load_config` mapping).

    ``params`` (default: all of ``space``) are drawn; the config's values stand for the rest.
    Trial ``n`` trains with seed ``seed + 10000 + n`` (user attribute ``seed``). A model that cannot be
    built or whose training raises ``ValueError`` (NaNs) is pruned, the message kept as ``error``.
    """
    from .training import make_env
    from .ppo import SparseRecurrentPPO

    check_space(space)
    env_id, total = config["env_id"], int(config.get("total_timesteps", 100_000))
    n_envs, normalize = int(config.get("n_envs", 8)), config.get("normalize", False)

    def objective(trial: optuna.Trial) -> float:
        sampled = convert(suggest(trial, n_envs, space, params))
        policy_kwargs = {**parse_policy_kwargs(config.get("policy_kwargs")), **sampled.pop("policy_kwargs")}
        ppo_kwargs = {**parse_ppo_kwargs(config.get("ppo_kwargs")), **sampled}
        problem = batch_problem(ppo_kwargs, n_envs)
        if problem:  # the setting, not the sample, is wrong: stop the worker instead of pruning every trial
            raise ValueError(problem)
        trial_seed = derived_seed(seed, 10_000 + trial.number)
        trial.set_user_attr("seed", trial_seed)
        env = make_env(env_id, n_envs, trial_seed, config.get("env_kwargs"), normalize)
        eval_env = make_env(env_id, 1, derived_seed(trial_seed, 1000), config.get("env_kwargs"), normalize)
        if isinstance(eval_env, VecNormalize):
            eval_env.training, eval_env.norm_reward = False, False
        callback = TrialEvalCallback(eval_env, trial, eval_episodes, max(total // n_evaluations // n_envs, 1),
                                     n_evaluations)
        try:
            model = SparseRecurrentPPO("SparseRecurrentPolicy", env, policy_kwargs=policy_kwargs, seed=trial_seed,
                                       device=device, **ppo_kwargs)
            model.learn(total, callback=callback)
        except (AssertionError, ValueError) as error:
            trial.set_user_attr("error", str(error))
            raise optuna.TrialPruned(str(error)) from error
        finally:
            env.close()
            eval_env.close()
        if callback.is_pruned:
            raise optuna.TrialPruned()
        return callback.last_mean_reward

    return objective


def check_sweep(config: str | None = None, env_id: str | None = None, space: str = "layer",
                study_name: str | None = None, n_trials: int = 20, n_jobs: int = 1, workers: int = 1,
                sampler: str = "tpe", pruner: str = "median", n_startup_trials: int = 10, n_evaluations: int = 4,
                eval_episodes: int = 5, total_timesteps: int | None = None, n_envs: int | None = None,
                seed: int = 0, fixed: dict[str, Any] | None = None, grid: dict[str, list] | None = None,
                params: list[str] | None = None, out: str | None = None,
                **_: Any) -> tuple[dict[str, Any], str, list[str] | None]:
    """Check a sweep's arguments (``ValueError`` naming the argument).

    Returns the train config, the study name and the parameters to draw: ``params`` plus the ``fixed``
    and ``grid`` names (a grid sampler draws only those: default ``grid`` and ``fixed``'s names), or
    ``None`` for all of ``space``.
    """
    check_space(space)
    for name, value, minimum in (("n_trials", n_trials, 0), ("n_jobs", n_jobs, 1), ("workers", workers, 1),
                                 ("n_startup_trials", n_startup_trials, 0), ("n_evaluations", n_evaluations, 1),
                                 ("eval_episodes", eval_episodes, 1), ("total_timesteps", total_timesteps, 1),
                                 ("n_envs", n_envs, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}; got {sampler!r}")
    if pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {list(PRUNERS)}; got {pruner!r}")
    as_seed("seed", seed)
    for name, given in (("fixed", fixed), ("grid", grid), ("params", params)):
        unknown = sorted(set(given or ()) - set(space_params(space)))
        if unknown:
            raise ValueError(f"{name} names {unknown}, not parameters of space {space!r}: {list(space_params(space))}")
    if (sampler == "grid") != bool(grid):
        raise ValueError(f"grid must be given exactly with sampler='grid'; got sampler={sampler!r}, grid={grid!r}")
    drawn = None
    if params is not None or sampler == "grid":
        drawn = sorted(set(params or ()) | set(fixed or {}) | set(grid or {}))
    if out is not None and Path(out).suffix not in (".csv", ".json"):
        raise ValueError(f"out must end in .csv or .json; got {out!r}")
    if config is None and env_id is None:
        raise ValueError("config or env_id is needed (the env and the settings not swept)")
    train_config = load_config(config) if config is not None else {}
    for key, value in (("env_id", env_id), ("total_timesteps", total_timesteps), ("n_envs", n_envs)):
        if value is not None:
            train_config[key] = value
    if not train_config.get("env_id"):
        raise ValueError(f"config {config!r} names no env_id; give env_id")
    if drawn is not None and not {"n_steps_pow", "batch_columns"} & set(drawn):
        problem = batch_problem(train_config.get("ppo_kwargs") or {}, int(train_config.get("n_envs", 8)))
        if problem:
            raise ValueError(problem)
    name = study_name or f"{train_config['env_id'].replace('/', '-')}-{space}"
    return train_config, name, drawn


def sweep(storage: str | None = None, heartbeat_interval: int = 60, max_retry: int = 3, device: str = "cpu",
          **kwargs: Any) -> dict[str, Any]:
    """Run a study (``kwargs``: :func:`check_sweep`'s) in ``workers`` processes; returns :func:`best_summary`.

    Each worker process ``i`` seeds its sampler and its trials with ``seed + i``.
    """
    config, name, drawn = check_sweep(**kwargs)
    storage_obj = make_storage(storage, heartbeat_interval=heartbeat_interval, max_retry=max_retry)
    workers, seed = kwargs.get("workers", 1), kwargs.get("seed", 0)
    if workers == 1:
        _worker(storage_obj, name, config, device, seed, drawn, kwargs)
    else:
        context = multiprocessing.get_context("spawn")
        procs = [context.Process(target=_worker_from_url, args=(storage, heartbeat_interval, max_retry, name,
                                                                config, device, seed + i, drawn, kwargs))
                 for i in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [proc.exitcode for proc in procs if proc.exitcode]
        if failed:
            raise RuntimeError(f"{len(failed)} of {workers} worker processes failed (exit codes {failed})")
    study = optuna.load_study(study_name=name, storage=storage_obj)
    summary = best_summary(study)
    out = kwargs.get("out") or f"runs/sweeps/{name}.csv"
    summary["trials_file"] = str(write_trials(study, out))
    return summary


def _worker(storage: Any, name: str, config: dict[str, Any], device: str, seed: int, drawn: list[str] | None,
            kw: dict[str, Any]) -> None:
    n_evaluations = kw.get("n_evaluations", 4)
    sampler = make_sampler(kw.get("sampler", "tpe"), seed, kw.get("n_startup_trials", 10), kw.get("grid"),
                           kw.get("fixed"))
    study = open_study(storage, name, sampler, make_pruner(kw.get("pruner", "median"),
                                                           kw.get("n_startup_trials", 10), n_evaluations))
    objective = rl_objective(config, kw.get("space", "layer"), n_evaluations, kw.get("eval_episodes", 5), seed,
                             device, drawn)
    run_worker(study, objective, kw.get("n_trials", 20), kw.get("n_jobs", 1), worker=f"{os.uname()[1]}:{os.getpid()}")


def _worker_from_url(storage: str | None, heartbeat_interval: int, max_retry: int, *args: Any) -> None:
    import torch

    torch.set_num_threads(1)
    _worker(make_storage(storage, heartbeat_interval=heartbeat_interval, max_retry=max_retry), *args)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``sweep`` sub-command of ``python -m sparsernn.agents``."""
    sw = commands.add_parser("sweep", help="an Optuna study over the layer's and PPO's options",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("--config", help="YAML training config (agents/configs/*.yaml): env and settings not swept")
    sw.add_argument("--env", dest="env_id", help="env id (overrides the config's)")
    sw.add_argument("--space", choices=SPACES, default="layer",
                    help="layer: cell, size, densities, router, gate; budget: (param_budget, hidden_proportion)")
    sw.add_argument("--storage", help="SQLite path (default runs/sweeps/sweeps.db), .log journal or "
                                      "Optuna/SQLAlchemy URL (postgresql://..., mysql+pymysql://...)")
    sw.add_argument("--study-name", help="default <env>-<space>; workers sharing it share the study")
    sw.add_argument("--n-trials", type=int, default=20, help="trials per worker process")
    sw.add_argument("--n-jobs", type=int, default=1, help="threads per worker process")
    sw.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    sw.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    sw.add_argument("--pruner", choices=PRUNERS, default="median")
    sw.add_argument("--n-startup-trials", type=int, default=10, help="random trials before TPE / pruning")
    sw.add_argument("--n-evaluations", type=int, default=4, help="intermediate evaluations reported per trial")
    sw.add_argument("--eval-episodes", type=int, default=5)
    sw.add_argument("--total-timesteps", type=int, help="steps per trial (overrides the config's)")
    sw.add_argument("--n-envs", type=int, help="overrides the config's")
    sw.add_argument("--seed", type=int, default=0, help="sampler and trial seeds (worker i: seed + i)")
    sw.add_argument("--params", nargs="+", metavar="NAME", help="draw only these (with --fix/--grid's names); "
                                                             "the config's values stand for the rest")
    sw.add_argument("--fix", nargs="+", metavar="NAME=VALUE", help="pin search-space parameters")
    sw.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="values of --sampler grid")
    sw.add_argument("--out", help="trials file, .csv or .json (default runs/sweeps/<study>.csv)")
    sw.add_argument("--heartbeat", type=int, default=60, help="RDB heartbeat seconds (stale trials fail, retried)")
    sw.add_argument("--max-retry", type=int, default=3, help="retries of a trial whose worker died")
    sw.add_argument("--device", default="cpu")
    sw.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    return sw


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run ``sweep`` from parsed arguments; a bad argument exits with status 2 naming it."""
    try:
        kwargs = dict(config=args.config, env_id=args.env_id, space=args.space, study_name=args.study_name,
                      n_trials=args.n_trials, n_jobs=args.n_jobs, workers=args.workers, sampler=args.sampler,
                      pruner=args.pruner, n_startup_trials=args.n_startup_trials, n_evaluations=args.n_evaluations,
                      eval_episodes=args.eval_episodes, total_timesteps=args.total_timesteps, n_envs=args.n_envs,
                      seed=args.seed, fixed=parse_assignments("--fix", args.fix),
                      grid=parse_assignments("--grid", args.grid, lists=True), params=args.params, out=args.out)
        check_sweep(**kwargs)
        make_storage(args.storage, heartbeat_interval=args.heartbeat, max_retry=args.max_retry)
    except (TypeError, ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    summary = sweep(storage=args.storage, heartbeat_interval=args.heartbeat, max_retry=args.max_retry,
                    device=args.device, **kwargs)
    print(json.dumps(summary, default=str))
    return 0
