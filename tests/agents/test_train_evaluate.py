"""train() / evaluate() / the command line, on tiny budgets; one slow learning test."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from sparsernn.agents import SparseRecurrentPPO, evaluate, load_config, load_model, train
from sparsernn.agents.cli import main
from sparsernn.agents.config import CONFIG_DIR, parse_policy_kwargs, parse_ppo_kwargs

TINY_PPO = {"n_steps": 16, "batch_size": 32, "n_epochs": 2}
TINY_POLICY = {"hidden_size": 8}


class TestTrain:
    @pytest.mark.parametrize("env_id, policy_kwargs", [
        ("sparsernn/CartPoleNoVel-v1", {"density_hh": 0.5}),
        ("sparsernn/PendulumNoVel-v1", {"cell": "lstm", "router_keep": 0.5}),
        ("sparsernn/CueMemory-v0", {"update_gate": "rhythm"}),
        ("CartPole-v1", {}),
    ])
    def test_trains_saves_and_evaluates(self, tmp_path, env_id, policy_kwargs):
        result = train(env_id, 64, n_envs=2, seed=0, normalize=True, policy_kwargs={**TINY_POLICY, **policy_kwargs},
                       ppo_kwargs=TINY_PPO, save_dir=tmp_path, eval_episodes=2)
        assert isinstance(result.model, SparseRecurrentPPO) and isinstance(result.env, VecNormalize)
        assert result.model.num_timesteps == 64
        assert result.model_path.is_file() and (tmp_path / "model.vecnormalize.json").is_file()
        assert len(result.evaluation.returns) == 2 and np.isfinite(result.evaluation.mean_return)
        if env_id.startswith("sparsernn/CueMemory"):
            assert result.evaluation.success_rate in (0.0, 0.5, 1.0)
        again = evaluate(load_model(result.model_path), env_id, 2, vec_normalize=tmp_path / "model.vecnormalize.json")
        assert len(again.returns) == 2

    def test_stock_algorithms_run_through_the_same_function(self):
        for algo, policy_kwargs in (("recurrent", {"lstm_hidden_size": 8}), ("ppo", {})):
            result = train("sparsernn/CartPoleNoVel-v1", 32, algo=algo, n_envs=2, seed=0,
                           policy_kwargs=policy_kwargs, ppo_kwargs=TINY_PPO, eval_episodes=1)
            assert result.model.num_timesteps == 32

    def test_works_with_sb3_evaluate_policy(self):
        result = train("sparsernn/CartPoleNoVel-v1", 32, n_envs=2, seed=0, policy_kwargs=TINY_POLICY,
                       ppo_kwargs=TINY_PPO, eval_episodes=0)
        mean, _ = evaluate_policy(result.model, result.env, n_eval_episodes=2)
        assert result.evaluation is None and mean > 0

    def test_evaluates_on_eval_env_kwargs(self):
        # taught at gap 3 (episodes of 7 steps), evaluated at gap 9 (13 steps): the evaluation's env is the other one
        result = train("sparsernn/CopyRecallLong-v0", 32, n_envs=2, seed=0, policy_kwargs=TINY_POLICY,
                       ppo_kwargs=TINY_PPO, env_kwargs={"gap": 3}, eval_env_kwargs={"gap": 9}, eval_episodes=2)
        assert result.evaluation.lengths == [13, 13]
        assert result.env.get_attr("gap") == [3, 3]
        default = train("sparsernn/CopyRecallLong-v0", 32, n_envs=2, seed=0, policy_kwargs=TINY_POLICY,
                        ppo_kwargs=TINY_PPO, env_kwargs={"gap": 3}, eval_episodes=1)
        assert default.evaluation.lengths == [7]

    @pytest.mark.parametrize("kwargs, match", [
        ({"eval_env_kwargs": [("gap", 3)]}, "eval_env_kwargs"),
        ({"env_kwargs": "gap=3"}, "env_kwargs"),
    ])
    def test_bad_env_kwargs_fail_early(self, kwargs, match):
        with pytest.raises(TypeError, match=match):
            train("sparsernn/CopyRecallLong-v0", 32, **kwargs)

    @pytest.mark.parametrize("kwargs, match", [
        ({"algo": "dqn"}, "algo"),
        ({"checkpoint_freq": 10}, "save_dir"),
    ])
    def test_bad_arguments_fail_early(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            train("sparsernn/CartPoleNoVel-v1", 32, **kwargs)


class TestConfig:
    def test_shipped_configs_load_and_parse(self):
        paths = sorted(CONFIG_DIR.glob("*.yaml"))
        assert {"cartpole_novel.yaml", "cue_memory.yaml", "copy_recall_gap1000.yaml"} <= {p.name for p in paths}
        for path in paths:
            config = load_config(path)
            ppo = parse_ppo_kwargs(config["ppo_kwargs"])
            parse_policy_kwargs(config["policy_kwargs"])
            # whole columns per minibatch, or one chunk of batch_size steps (SparseRecurrentPPO's chunk default)
            assert ppo["batch_size"] % ppo["n_steps"] == 0 or ppo["n_steps"] % ppo["batch_size"] == 0, path.name
        schedule = parse_ppo_kwargs({"learning_rate": "lin_1e-3"})["learning_rate"]
        assert schedule(1.0) == pytest.approx(1e-3) and schedule(0.5) == pytest.approx(5e-4)

    @pytest.mark.parametrize("text, match", [("envid: x\n", "unknown key"), ("- 1\n", "mapping")])
    def test_bad_files_are_rejected(self, tmp_path, text, match):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_config(path)

    @pytest.mark.parametrize("bad", [{"learning_rate": "cos_1"}, {"clip_range": "lin_x"}])
    def test_bad_schedules_are_rejected(self, bad):
        with pytest.raises(ValueError, match=list(bad)[0]):
            parse_ppo_kwargs(bad)


class TestCommandLine:
    def test_train_then_evaluate(self, tmp_path, capsys):
        config = tmp_path / "cfg.yaml"
        config.write_text("env_id: sparsernn/CartPoleNoVel-v1\nn_envs: 2\nnormalize: true\n"
                          "ppo_kwargs: {n_steps: 16, batch_size: 32, n_epochs: 1, learning_rate: lin_1e-3}\n")
        save_dir = tmp_path / "run"
        status = main(["train", "--config", str(config), "--cell", "gru", "--hidden-size", "8", "--density-hh", "0.5",
                       "--router-keep", "1.0", "0.5", "--total-timesteps", "64", "--seed", "0",
                       "--backend", "fused",
                       "--save-dir", str(save_dir), "--checkpoint-freq", "32", "--tensorboard", str(tmp_path / "tb"),
                       "--eval-episodes", "2", "--no-progress-bar"])
        assert status == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert report["model"] == str(save_dir / "model.zip") and "mean_return" in report
        assert sorted(p.name for p in (save_dir / "checkpoints").glob("*.zip")) == [
            "rl_model_32_steps.zip", "rl_model_64_steps.zip"]
        assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))
        layer = load_model(save_dir / "model.zip").policy.lstm_actor.layer
        assert (layer.density_hh, layer.router_keep, layer.hidden_size) == (0.5, (1.0, 0.5), 8)
        assert main(["evaluate", str(save_dir / "model.zip"), "--env", "sparsernn/CartPoleNoVel-v1",
                     "--episodes", "2"]) == 0
        assert len(json.loads(capsys.readouterr().out)["returns"]) == 2

    def test_env_kwargs_flags(self, tmp_path, capsys):
        save_dir = tmp_path / "run"
        status = main(["train", "--env", "sparsernn/CopyRecallLong-v0", "--hidden-size", "8", "--n-envs", "2",
                       "--n-steps", "16", "--batch-size", "32", "--n-epochs", "1", "--total-timesteps", "32",
                       "--env-kwargs", '{"gap": 3}', "--eval-env-kwargs", '{"gap": 9}', "--eval-episodes", "1",
                       "--save-dir", str(save_dir), "--no-progress-bar"])
        assert status == 0
        capsys.readouterr()
        assert main(["evaluate", str(save_dir / "model.zip"), "--env", "sparsernn/CopyRecallLong-v0",
                     "--env-kwargs", '{"gap": 5}', "--episodes", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["lengths"] == [9]  # 2 symbols + gap 5 + 2 answers

    @pytest.mark.parametrize("text", ['{"gap": 3', '[3]', 'gap=3'])
    def test_bad_env_kwargs_flag_exits_naming_it(self, text, capsys):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--env", "sparsernn/CopyRecallLong-v0", "--env-kwargs", text])
        assert exit_info.value.code == 2 and "--env-kwargs" in capsys.readouterr().err

    def test_module_entry_point(self):
        done = subprocess.run([sys.executable, "-m", "sparsernn.agents", "train", "--help"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "--density-hh" in done.stdout

    def test_missing_env_is_reported(self):
        with pytest.raises(SystemExit, match="env"):
            main(["train", "--total-timesteps", "10"])


@pytest.mark.slow
def test_cartpole_novel_reaches_450():
    """The Zoo's CartPoleNoVel settings, dense LSTM, one torch thread as in docs/rl.md's sweep.

    Which seed ends at 500 moves with float rounding (C++ vs TorchScript loops, fused vs
    per-tensor Adam gave 281 / 500 / 386 for seed 0; the sweep's seeds gave 500, 283, 500),
    so the test trains seeds 0-2 and asks that one reaches 450 and that they learn on average.
    """
    config = load_config(CONFIG_DIR / "cartpole_novel.yaml")
    config["policy_kwargs"]["cell"] = "lstm"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        returns = [train(**{**config, "seed": seed, "eval_episodes": 20}).evaluation.mean_return for seed in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert max(returns) >= 450, returns
    assert sum(returns) / 3 >= 300, returns  # and learning on average, not one lucky seed
