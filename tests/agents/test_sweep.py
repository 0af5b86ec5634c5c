"""Sweeps (issue 15 item 3): worker processes sharing one Optuna study, rl-zoo3's entry point with our
algorithm, the sampler's choices, the shipped rl-zoo3 hyperparameters, and bad arguments."""
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO
from sparsernn.agents.cli import main as cli_main
from sparsernn.agents.config import CONFIG_DIR, load_config
from sparsernn.agents.sweep import make_sampler, make_storage, parse_assignments, postgres_driver, write_trials
from sparsernn.agents.sweep_rl import check_sweep, sweep
from sparsernn.agents.sweep_space import SPACES, ZOO_ALGO, convert, suggest
from sparsernn.agents.zoo import HYPERPARAMS, register, zoo_argv

CONFIG = str(CONFIG_DIR / "cartpole_novel.yaml")
# A trial of a few hundred steps: the PPO knobs that size the work pinned, the layer's options drawn.
TINY = ["--total-timesteps", "128", "--n-envs", "2", "--n-evaluations", "2", "--eval-episodes", "1",
        "--fix", "n_steps_pow=4", "batch_columns=1", "n_epochs=1", "net_arch=tiny", "hidden_size=16",
        "--n-startup-trials", "1"]


def sweep_command(storage, *args):
    return [sys.executable, "-m", "sparsernn.agents", "sweep", "--config", CONFIG, "--storage", str(storage),
            "--study-name", "shared", *TINY, *args]


def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    storage = tmp_path / "study.db"
    workers = [subprocess.Popen(sweep_command(storage, "--n-trials", "2", "--seed", str(seed),
                                              "--out", str(tmp_path / f"w{seed}.json")),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{storage}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # unique numbers across processes
    by_worker = {}
    for trial in trials:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert sorted(len(numbers) for numbers in by_worker.values()) == [2, 2]  # two processes, two trials each
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and study.best_value == max(t.value for t in complete)
    # A worker reading the study afterwards (no trials of its own) sees every trial of both and their best.
    summary = sweep(storage=str(storage), config=CONFIG, study_name="shared", n_trials=0,
                    out=str(tmp_path / "all.csv"))
    assert summary["n_trials"] == 4 and summary["best"]["number"] == study.best_trial.number
    rows = json.loads((tmp_path / "w1.json").read_text())
    assert {row["number"] for row in rows} <= {0, 1, 2, 3}
    assert (tmp_path / "all.csv").read_text().count("\n") == 5  # header + 4 trials


def test_rl_zoo3_trains_and_optimizes_our_algorithm(tmp_path):
    zoo = [sys.executable, "-m", "sparsernn.agents.zoo", "--algo", ZOO_ALGO, "--env", "sparsernn/CartPoleNoVel-v1",
           "--gym-packages", "sparsernn.envs", "-f", str(tmp_path / "logs"), "--seed", "0", "--num-threads", "1",
           "--eval-episodes", "1", "-params", "n_envs:2", "n_steps:16", "batch_size:32", "n_epochs:1"]
    trained = subprocess.run(zoo + ["-n", "64", "--eval-freq", "-1"], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / "logs" / ZOO_ALGO / "sparsernn-CartPoleNoVel-v1_1" / "sparsernn-CartPoleNoVel-v1.zip").is_file()
    storage = f"sqlite:///{tmp_path / 'zoo.db'}"
    optimized = subprocess.run(zoo + ["-n", "64", "-optimize", "--n-trials", "1", "--n-evaluations", "1",
                                      "--storage", storage, "--study-name", "zoo", "--no-optim-plots"],
                               capture_output=True, text=True, timeout=300)
    assert optimized.returncode == 0, optimized.stderr[-3000:]
    trial = optuna.load_study(study_name="zoo", storage=storage).trials[0]
    assert trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert {"cell", "hidden_size", "density_hh", "update_gate", "n_steps_pow"} <= set(trial.params)


def test_rl_zoo3_alone_refuses_an_algorithm_registered_by_a_gym_package():
    """Why sparsernn.agents.zoo exists: rl_zoo3.train fixes --algo's choices before importing --gym-packages.
    If this starts passing, rl-zoo3 changed and docs/rl.md's plain rl_zoo3.train command becomes possible."""
    completed = subprocess.run([sys.executable, "-m", "rl_zoo3.train", "--algo", ZOO_ALGO, "--gym-packages",
                                "sparsernn.agents.zoo", "-n", "1"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2 and "invalid choice" in completed.stderr


def test_register_adds_our_algorithm_to_rl_zoo3_tables():
    from rl_zoo3 import hyperparams_opt, utils

    names = register()
    assert register() == names  # idempotent
    for name in names:
        assert utils.ALGOS[name] is SparseRecurrentPPO
        assert name in hyperparams_opt.HYPERPARAMS_SAMPLER and name in hyperparams_opt.HYPERPARAMS_CONVERTER
    assert SparseRecurrentPPO.policy_aliases["SparseRecurrentPolicy"].__name__ == "SparseRecurrentPolicy"
    assert zoo_argv(["--algo", ZOO_ALGO])[-2:] == ["-conf", str(HYPERPARAMS)]
    assert zoo_argv(["--algo", ZOO_ALGO, "-conf", "mine.yml"]) == ["--algo", ZOO_ALGO, "-conf", "mine.yml"]
    assert zoo_argv(["--algo", "ppo"]) == ["--algo", "ppo"]


def categorical_choices(space):
    """(name, choice) for every categorical parameter of ``space``, a gate's rates included."""
    study = optuna.create_study(sampler=make_sampler("random", 0, fixed={"update_gate": "event"}))
    trial = study.ask()
    suggest(trial, 8, space)
    return [(name, choice) for name, dist in trial.distributions.items()
            if isinstance(dist, optuna.distributions.CategoricalDistribution) for choice in dist.choices]


@pytest.mark.parametrize("space", SPACES)
def test_sampler_gives_valid_policy_kwargs_for_every_categorical_choice(space):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=8, seed=0)
    choices = categorical_choices(space)
    assert {"cell", "update_gate", "initial_update_rate", "net_arch"} <= {name for name, _ in choices}
    extremes = [("hidden_proportion", p) for p in (0.1, 0.9)] if space == "budget" else []
    for name, choice in choices + extremes:
        fixed = {name: choice}
        if name in ("initial_update_rate", "target_update_rate"):
            fixed["update_gate"] = "event"
        study = optuna.create_study(sampler=make_sampler("random", 1, fixed=fixed))
        trial = study.ask()
        kwargs = convert(suggest(trial, 8, space))
        assert trial.params[name] == choice
        assert kwargs["batch_size"] % kwargs["n_steps"] == 0 and kwargs["batch_size"] <= 8 * kwargs["n_steps"]
        model = SparseRecurrentPPO("SparseRecurrentPolicy", env, device="cpu", seed=0, **kwargs)
        layer = model.policy.lstm_actor.layer
        assert layer.cell == kwargs["policy_kwargs"]["cell"], (name, choice)
        if space == "budget":
            assert model.policy.param_budget == trial.params["param_budget"]
    env.close()


def test_shipped_rl_zoo3_hyperparams_agree_with_our_configs():
    zoo = yaml.safe_load(HYPERPARAMS.read_text())
    for env_id in ("sparsernn/CartPoleNoVel-v1", "sparsernn/PendulumNoVel-v1", "sparsernn/CueMemory-v0",
                   "sparsernn/Counting-v0", "sparsernn/RepeatPrevious-v0", "sparsernn/CueMemoryNoisyShort-v0"):
        assert env_id in zoo
    checked = 0
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        config = load_config(path)
        if config.get("env_kwargs") or config["env_id"] not in zoo:
            continue  # a variant of an env's defaults (copy_recall_gap1000, repeat_previous_k2)
        entry, ppo = zoo[config["env_id"]], config["ppo_kwargs"]
        assert entry["policy"] == "SparseRecurrentPolicy" and entry["n_timesteps"] == config["total_timesteps"]
        assert (entry["n_envs"], entry["normalize"]) == (config["n_envs"], config["normalize"]), path.name
        for key in ("n_steps", "batch_size", "gamma", "gae_lambda", "n_epochs", "ent_coef"):
            assert entry[key] == ppo[key], (path.name, key)
        for key in ("learning_rate", "clip_range"):
            if key in ppo:
                assert str(entry[key]).startswith("lin_") == str(ppo[key]).startswith("lin_"), (path.name, key)
                assert float(str(entry[key]).removeprefix("lin_")) == float(str(ppo[key]).removeprefix("lin_"))
        policy = eval(entry["policy_kwargs"], {"nn": nn})  # rl-zoo3 evaluates this string the same way
        for key in ("hidden_size", "enable_critic_lstm", "net_arch"):
            assert policy[key] == config["policy_kwargs"][key], (path.name, key)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("kwargs, named", [
    ({"n_trials": -1}, "n_trials"), ({"n_jobs": 0}, "n_jobs"), ({"workers": 0}, "workers"),
    ({"space": "everything"}, "space"), ({"sampler": "cmaes"}, "sampler"), ({"pruner": "hyperband"}, "pruner"),
    ({"n_evaluations": 0}, "n_evaluations"), ({"fixed": {"bogus": 1}}, "fixed"), ({"grid": {"lr": [1]}}, "grid"),
    ({"out": "trials.txt"}, "out"), ({"seed": -1}, "seed"), ({"total_timesteps": 0}, "total_timesteps"),
    # the config's 8 columns of 32 steps per minibatch cannot come from 2 envs when the sizes are not drawn
    ({"n_envs": 2, "params": ["cell"]}, "batch_size"),
])
def test_bad_sweep_arguments_raise_value_error_naming_them(kwargs, named):
    with pytest.raises(ValueError, match=named):
        check_sweep(**{"config": CONFIG, **kwargs})


def test_bad_engine_arguments_raise_value_error_naming_them(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        make_storage("")
    with pytest.raises(ValueError, match="heartbeat_interval"):
        make_storage(str(tmp_path / "s.db"), heartbeat_interval=0)
    with pytest.raises(ValueError, match="grid"):
        make_sampler("tpe", grid={"hidden_proportion": [0.5]})
    with pytest.raises(ValueError, match="--fix"):
        parse_assignments("--fix", ["cell"])
    with pytest.raises(ValueError, match="n_envs"):
        suggest(optuna.create_study().ask(), 0)
    with pytest.raises(ValueError, match="bogus"):
        convert({"bogus": 1})
    study = optuna.create_study()
    with pytest.raises(ValueError, match="path"):
        write_trials(study, tmp_path / "trials.txt")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["sweep", "--config", CONFIG, "--n-trials", "-1", "--storage", str(tmp_path / "s.db")])
    assert exit_info.value.code == 2


def test_grid_and_fixed_parameters_parse_and_sample():
    assert parse_assignments("--fix", ["cell=gru", "param_budget=4096", "router_keep=none"]) == {
        "cell": "gru", "param_budget": 4096, "router_keep": None}
    grid = parse_assignments("--grid", ["hidden_proportion=0.1,0.5,0.9"], lists=True)
    sampler = make_sampler("grid", 0, grid=grid, fixed={"param_budget": 4096, "cell": "gru"})
    study = optuna.create_study(sampler=sampler)
    seen = []

    def objective(trial):
        raw = suggest(trial, 8, "budget", params=["param_budget", "hidden_proportion", "cell"])
        assert raw == {"cell": "gru", "param_budget": 4096, "hidden_proportion": raw["hidden_proportion"]}
        seen.append(raw["hidden_proportion"])
        return 0.0

    study.optimize(objective, n_trials=10)  # the grid sampler stops the study when the grid is done
    assert sorted(seen) == [0.1, 0.5, 0.9]


def test_postgres_url_gets_the_installed_driver(monkeypatch):
    import importlib.util

    installed = {"psycopg2"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert postgres_driver("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert postgres_driver("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"  # a named driver stays
    assert postgres_driver("sqlite:///x.db") == "sqlite:///x.db"
    installed.add("psycopg")  # psycopg 3 present: SQLAlchemy's default for postgresql:// works
    assert postgres_driver("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning",
                            "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_dead_workers_trial_fails_and_is_retried_with_its_parameters(tmp_path):
    """make_storage's heartbeat and retry: a RUNNING trial whose worker stopped beating is FAIL and re-queued."""
    import time

    storage = make_storage(str(tmp_path / "s.db"), heartbeat_interval=1, grace_period=1, max_retry=1)
    study = optuna.create_study(storage=storage, study_name="retry")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)  # what a worker's heartbeat thread does, then the worker "dies"
    time.sleep(2.5)  # past the grace period
    optuna.storages.fail_stale_trials(study)
    dead, retry = study.get_trials()
    assert dead.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.WAITING and retry.params == dead.params
    assert retry.system_attrs["failed_trial"] == dead.number
