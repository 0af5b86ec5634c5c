"""Optuna studies shared by worker processes and machines: storage, sampler, pruner, report.

The engine of ``python -m sparsernn.agents sweep`` (:mod:`sparsernn.agents.sweep_rl`), kept free of RL so
that any objective can use it (a detector's score, a fixed grid over ``hidden_proportion``)::

    study = open_study("sqlite:///runs/sweeps/s.db", "s", sampler="tpe", seed=0)
    run_worker(study, objective, n_trials=20)        # in as many processes / machines as you like
    print(best_summary(study)); write_trials(study, "runs/sweeps/s.csv")

Storage (:func:`make_storage`): a path (``runs/sweeps/s.db``, a SQLite file, made if missing) or any
SQLAlchemy URL Optuna accepts (``sqlite:///...``, ``postgresql://user:pw@host/db``,
``mysql+pymysql://...``) is an :class:`optuna.storages.RDBStorage` with a heartbeat (a worker that dies
leaves its RUNNING trial FAIL after ``grace_period`` seconds) and Optuna's retry callback
(``RetryHeartbeatStaleTrialCallback``, ``RetryFailedTrialCallback`` before Optuna 4.9: such a trial is
enqueued again, at most ``max_retry`` times); a path ending ``.log`` is Optuna's journal file (one machine,
no database). Several workers that name the same storage and ``study_name`` share one study: trial numbers
are unique, every worker's sampler sees every finished trial, and the best trial is over all of them.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import yaml
from optuna.pruners import BasePruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, PartialFixedSampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
DEFAULT_STORAGE = "runs/sweeps/sweeps.db"


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def make_storage(storage: str | None = None, heartbeat_interval: int = 60, grace_period: int | None = None,
                 max_retry: int = 3) -> BaseStorage:
    """The Optuna storage ``storage`` names (default :data:`DEFAULT_STORAGE`, a SQLite file).

    Parameters
    ----------
    storage : str, optional
        A SQLAlchemy URL (has ``://``), a ``.log`` journal file, or a SQLite file path.
    heartbeat_interval : int >= 1
        Seconds between a running trial's heartbeats (RDB storages).
    grace_period : int, optional
        Seconds without a heartbeat after which a RUNNING trial is FAIL (default ``2 * heartbeat_interval``).
    max_retry : int >= 0
        How often a failed (stale) trial is retried.
    """
    storage = DEFAULT_STORAGE if storage is None else storage
    if not isinstance(storage, str) or not storage:
        raise ValueError(f"storage must be a non-empty URL or path; got {storage!r}")
    _count("heartbeat_interval", heartbeat_interval, 1)
    _count("max_retry", max_retry, 0)
    if grace_period is not None:
        _count("grace_period", grace_period, 1)
    if "://" not in storage and storage.endswith(".log"):
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(storage))
    if "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{Path(storage).resolve()}"
    storage = postgres_driver(storage)
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats and retries work but are still labelled experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(storage, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                  grace_period=grace_period or 2 * heartbeat_interval, **_retry(max_retry))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            # Workers that start together on an empty database race to create Optuna's schema (the loser
            # fails on alembic_version's unique key or an existing table); the next attempt finds the schema.
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def postgres_driver(url: str) -> str:
    """``postgresql://...`` with the driver that is installed: SQLAlchemy 2.1 reads a bare ``postgresql://`` as
    psycopg 3; where only psycopg2 (``pip install psycopg2-binary``) is importable the URL is made
    ``postgresql+psycopg2://...``. Other URLs, and URLs naming a driver, are returned as given."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _retry(max_retry: int) -> dict[str, Any]:
    """RDBStorage's retry of a stale trial: Optuna >= 4.9 names it ``heartbeat_stale_trial_callback``
    (``RetryHeartbeatStaleTrialCallback``), older releases ``failed_trial_callback``
    (``RetryFailedTrialCallback``)."""
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        return {"heartbeat_stale_trial_callback": callback}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=max_retry)}


def make_sampler(sampler: str = "tpe", seed: int | None = None, n_startup_trials: int = 10,
                 grid: dict[str, list[Any]] | None = None, fixed: dict[str, Any] | None = None) -> BaseSampler:
    """TPE (multivariate, as rl-zoo3), random or grid sampling; ``fixed`` pins parameters (``PartialFixedSampler``).

    ``grid`` (``{name: [values]}``) is required by and only used with ``"grid"``; a grid names every
    parameter the objective draws except those in ``fixed``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}; got {sampler!r}")
    _count("n_startup_trials", n_startup_trials, 0)
    if (sampler == "grid") != bool(grid):
        raise ValueError(f"grid must be given exactly with sampler='grid'; got sampler={sampler!r}, grid={grid!r}")
    if sampler == "tpe":
        base: BaseSampler = TPESampler(n_startup_trials=n_startup_trials, seed=seed, multivariate=True)
    elif sampler == "random":
        base = RandomSampler(seed=seed)
    else:
        base = GridSampler({name: list(values) for name, values in grid.items()}, seed=seed)
    if not fixed:
        return base
    with warnings.catch_warnings():  # works, but still labelled experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return PartialFixedSampler(dict(fixed), base)


def make_pruner(pruner: str = "median", n_startup_trials: int = 10, n_evaluations: int = 1) -> BasePruner:
    """rl-zoo3's median pruner: no pruning before ``n_startup_trials`` trials and ``n_evaluations // 3`` reports."""
    if pruner not in PRUNERS:
        raise ValueError(f"pruner must be one of {list(PRUNERS)}; got {pruner!r}")
    if pruner == "none":
        return NopPruner()
    return MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_evaluations // 3)


def open_study(storage: str | BaseStorage | None, study_name: str, sampler: BaseSampler | None = None,
               pruner: BasePruner | None = None, direction: str = "maximize") -> optuna.Study:
    """Create study ``study_name`` in ``storage`` or load it if a worker already did (``load_if_exists``)."""
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(f"study_name must be a non-empty string; got {study_name!r}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize'; got {direction!r}")
    if not isinstance(storage, BaseStorage):
        storage = make_storage(storage)
    return optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                               direction=direction, load_if_exists=True)


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
               n_jobs: int = 1, worker: str | None = None) -> None:
    """Run ``n_trials`` trials of ``objective`` in this process (``n_jobs`` threads), each tagged ``worker``."""
    _count("n_trials", n_trials, 0)
    _count("n_jobs", n_jobs, 1)

    def tagged(trial: optuna.Trial) -> float:
        if worker is not None:
            trial.set_user_attr("worker", worker)
        return objective(trial)

    if n_trials:
        study.optimize(tagged, n_trials=n_trials, n_jobs=n_jobs, gc_after_trial=True)


def best_summary(study: optuna.Study) -> dict[str, Any]:
    """The study's trial counts by state and its best trial (``None`` while no trial has completed)."""
    trials = study.get_trials(deepcopy=False)
    states = {state.name.lower(): sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    summary: dict[str, Any] = {"study": study.study_name, "n_trials": len(trials),
                               **{k: v for k, v in states.items() if v}, "best": None}
    if states.get("complete"):
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params,
                           "user_attrs": best.user_attrs}
    return summary


def write_trials(study: optuna.Study, path: str | Path) -> Path:
    """Every trial of ``study`` (Optuna's ``trials_dataframe``) as CSV, or JSON records for a ``.json`` path."""
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise ValueError(f"path must end in .csv or .json; got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = study.trials_dataframe()
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        records = json.loads(frame.to_json(orient="records", date_format="iso"))
        path.write_text(json.dumps(records, indent=1, default=str) + "\n")
    return path


def parse_assignments(name: str, items: list[str] | None, lists: bool = False) -> dict[str, Any]:
    """``["cell=gru", "param_budget=4096"]`` -> ``{"cell": "gru", "param_budget": 4096}``; with ``lists``
    each value is a comma list (``hidden_proportion=0.1,0.5``). Values are read as YAML scalars
    (``none`` -> None, ``0.5`` -> 0.5, ``true`` -> True)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{name} takes NAME=VALUE{',VALUE...' if lists else ''}; got {item!r}")
        values = [_scalar(part) for part in text.split(",")] if lists else _scalar(text)
        for value in values if lists else [values]:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} {key}: expected finite numbers; got {text!r}")
        out[key] = values
    return out


def _scalar(text: str) -> Any:
    """A YAML scalar, ``none``/``None`` read as None (a categorical choice of the layer space)."""
    return None if text.strip() in ("none", "None") else yaml.safe_load(text)
