"""Model and normalisation files: damaged files name themselves, saves are atomic, no pickle is read
unasked, an env that does not fit is refused, an existing run is not overwritten, resume continues."""
import json
import pickle
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from gymnasium.spaces import Discrete
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO, evaluate, load_model, train
from sparsernn.agents.cli import main
from sparsernn.agents.model_files import (ModelFileError, load_normalization, normalization_path, save_model,
                                          save_normalization)

CARTPOLE = "sparsernn/CartPoleNoVel-v1"
TINY = dict(n_envs=2, seed=0, policy_kwargs={"hidden_size": 8}, ppo_kwargs={"n_steps": 16, "batch_size": 32,
                                                                           "n_epochs": 1})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A normalised CartPoleNoVel run saved in a module-wide directory: (save_dir, TrainResult)."""
    save_dir = tmp_path_factory.mktemp("run")
    return save_dir, train(CARTPOLE, 32, normalize=True, save_dir=save_dir, eval_episodes=0, **TINY)


def _damage(data: bytes, how: str) -> bytes:
    if how == "empty":
        return b""
    if how == "half":
        return data[: len(data) // 2]
    if how == "flipped":  # flip bytes inside the compressed policy weights
        with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:
            info = archive.getinfo("policy.pth")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
        return data[:start] + bytes(b ^ 0xFF for b in data[start:start + 8]) + data[start + 8:]
    if how == "not-a-zip":
        return b"PK\x03\x04 but not really a zip" * 10
    raise ValueError(how)


class TestDamagedModelFiles:
    @pytest.mark.parametrize("how", ["empty", "half", "flipped", "not-a-zip"])
    def test_load_names_the_file_and_the_damage(self, trained, tmp_path, how):
        bad = tmp_path / "model.zip"
        bad.write_bytes(_damage((trained[0] / "model.zip").read_bytes(), how))
        with pytest.raises(ModelFileError, match="model file '.*model.zip'") as info:
            load_model(bad)
        assert isinstance(info.value, ValueError)

    def test_missing_member_is_named(self, trained, tmp_path):
        bad = tmp_path / "model.zip"
        with zipfile.ZipFile(trained[0] / "model.zip") as src, zipfile.ZipFile(bad, "w") as dst:
            for item in src.infolist():
                if item.filename != "policy.pth":
                    dst.writestr(item, src.read(item))
        with pytest.raises(ModelFileError, match="policy.pth"):
            load_model(bad)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.zip"):
            load_model(tmp_path / "nope.zip")

    @pytest.mark.parametrize("how", ["empty", "half", "flipped"])
    def test_cli_evaluate_exits_with_the_message(self, trained, tmp_path, capsys, how):
        bad = tmp_path / "model.zip"
        bad.write_bytes(_damage((trained[0] / "model.zip").read_bytes(), how))
        with pytest.raises(SystemExit, match=f"evaluate: error: model file '{bad}'"):
            main(["evaluate", str(bad), "--env", CARTPOLE, "--episodes", "1"])

    def test_crash_mid_save_keeps_the_previous_file(self, trained, tmp_path, monkeypatch):
        path = tmp_path / "model.zip"
        model = trained[1].model
        save_model(model, path)
        before = path.read_bytes()

        def crash(*args, **kwargs):
            raise KeyboardInterrupt("crash mid-save")

        monkeypatch.setattr("stable_baselines3.common.save_util.th.save", crash)
        with pytest.raises(KeyboardInterrupt):
            save_model(model, path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"], "a temporary file was left behind"
        load_model(path)


class TestNormalizationFile:
    def test_round_trip_restores_every_statistic(self, trained, tmp_path):
        env = trained[1].env
        path = save_normalization(env, tmp_path / "stats.json")
        restored = load_normalization(path, make_vec_env(CARTPOLE, n_envs=1), training=True)
        for name in ("mean", "var", "count"):
            np.testing.assert_array_equal(getattr(restored.obs_rms, name), getattr(env.obs_rms, name))
            np.testing.assert_array_equal(getattr(restored.ret_rms, name), getattr(env.ret_rms, name))
        for name in ("clip_obs", "clip_reward", "gamma", "epsilon", "norm_obs", "norm_reward"):
            assert getattr(restored, name) == getattr(env, name), name

    @pytest.mark.parametrize("edit, match", [
        (lambda d: d["obs_rms"].update(mean=[0.0] * 5), "shapes"),
        (lambda d: d["obs_rms"].update(var=[-1.0, 1.0]), "negative"),
        (lambda d: d["ret_rms"].update(count=0.0), "count"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.pop("clip_obs"), "clip_obs"),
    ])
    def test_bad_statistics_are_refused_naming_the_file(self, trained, tmp_path, edit, match):
        data = json.loads(normalization_path(trained[0] / "model.zip").read_text())
        edit(data)
        path = tmp_path / "stats.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ModelFileError, match=match) as info:
            load_normalization(path, make_vec_env(CARTPOLE, n_envs=1))
        assert str(path) in str(info.value)

    def test_booby_trapped_pickle_beside_the_model_is_never_unpickled(self, trained, tmp_path, capsys):
        run = tmp_path / "run"
        run.mkdir()
        (run / "model.zip").write_bytes((trained[0] / "model.zip").read_bytes())
        marker = tmp_path / "pwned"

        class Trap:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        (run / "vecnormalize.pkl").write_bytes(pickle.dumps(Trap()))
        assert main(["evaluate", str(run / "model.zip"), "--env", CARTPOLE, "--episodes", "1"]) == 0
        assert not marker.exists(), "vecnormalize.pkl beside the model was unpickled"
        capsys.readouterr()

    def test_evaluate_refuses_a_pickle_path(self, trained, tmp_path):
        with pytest.raises(ModelFileError, match="not valid JSON"):
            path = tmp_path / "vecnormalize.pkl"
            path.write_bytes(pickle.dumps({"a": 1}))
            evaluate(trained[1].model, CARTPOLE, 1, vec_normalize=path)


class TestSpaces:
    def test_evaluate_refuses_an_env_that_does_not_fit(self, trained):
        model = trained[1].model  # CartPoleNoVel: Box (2,), Discrete(2)
        with pytest.raises(ValueError, match="'MountainCar-v0' does not fit the model: its observation space") as info:
            evaluate(model, "MountainCar-v0", 1)
        assert str(model.observation_space) in str(info.value)
        assert str(make_vec_env("MountainCar-v0").observation_space) in str(info.value)

    def test_action_space_is_checked_too(self, trained):
        model = trained[1].model
        other = SimpleNamespace(observation_space=model.observation_space, action_space=Discrete(3))
        with pytest.raises(ValueError, match=r"its action space is Discrete\(2\), the model's is Discrete\(3\)"):
            evaluate(other, CARTPOLE, 1)

    def test_cli_evaluate_refuses_it_too(self, trained):
        with pytest.raises(SystemExit, match="MountainCar-v0.*does not fit the model"):
            main(["evaluate", str(trained[0] / "model.zip"), "--env", "MountainCar-v0", "--episodes", "1"])


class TestOverwriteAndResume:
    def test_existing_run_is_not_overwritten(self, trained, monkeypatch):
        save_dir = trained[0]
        before = (save_dir / "model.zip").read_bytes()
        built = []
        monkeypatch.setattr(SparseRecurrentPPO, "_setup_model", lambda self: built.append(self))
        with pytest.raises(FileExistsError, match="overwrite"):
            train(CARTPOLE, 32, save_dir=save_dir, **TINY)
        assert built == [] and (save_dir / "model.zip").read_bytes() == before

    def test_cli_refuses_with_exit_2(self, trained, capsys):
        with pytest.raises(SystemExit) as info:
            main(["train", "--env", CARTPOLE, "--total-timesteps", "32", "--save-dir", str(trained[0])])
        assert info.value.code == 2 and "--overwrite" in capsys.readouterr().err

    def test_overwrite_replaces_and_drops_stale_statistics(self, tmp_path):
        train(CARTPOLE, 32, normalize=True, save_dir=tmp_path, eval_episodes=0, **TINY)
        assert normalization_path(tmp_path / "model.zip").is_file()
        result = train(CARTPOLE, 32, save_dir=tmp_path, eval_episodes=0, overwrite=True, **TINY)
        assert result.model_path == tmp_path / "model.zip"
        assert not normalization_path(tmp_path / "model.zip").exists()

    def test_resume_continues_steps_and_statistics(self, tmp_path):
        first = train(CARTPOLE, 64, normalize=True, save_dir=tmp_path / "a", eval_episodes=0, checkpoint_freq=32,
                      **TINY)
        checkpoint = tmp_path / "a" / "checkpoints" / "rl_model_32_steps.zip"
        assert normalization_path(checkpoint).is_file()
        resumed = train(CARTPOLE, 32, resume=tmp_path / "a" / "model.zip", save_dir=tmp_path / "b",
                        eval_episodes=0, n_envs=2, seed=1)
        assert resumed.model.num_timesteps == 96
        assert isinstance(resumed.env, VecNormalize) and resumed.env.training
        # The statistics went on from the saved ones: the 2 reset observations and 32 steps on top.
        assert resumed.env.obs_rms.count == first.env.obs_rms.count + 2 + 32
        saved = json.loads(normalization_path(tmp_path / "b" / "model.zip").read_text())
        assert saved["obs_rms"]["count"] == first.env.obs_rms.count + 2 + 32
        from_checkpoint = train(CARTPOLE, 32, resume=checkpoint, eval_episodes=0, n_envs=2)
        assert from_checkpoint.model.num_timesteps == 64

    def test_cli_resume_and_overwrite(self, tmp_path, capsys):
        common = ["--env", CARTPOLE, "--n-envs", "2", "--hidden-size", "8", "--n-steps", "16", "--batch-size", "32",
                  "--n-epochs", "1", "--eval-episodes", "0", "--no-progress-bar", "--normalize"]
        assert main(["train", *common, "--total-timesteps", "32", "--save-dir", str(tmp_path)]) == 0
        with pytest.warns(UserWarning, match="saved model's policy and PPO settings are used"):
            assert main(["train", *common, "--total-timesteps", "32", "--save-dir", str(tmp_path), "--overwrite",
                         "--resume", str(tmp_path / "model.zip")]) == 0
        assert load_model(tmp_path / "model.zip").num_timesteps == 64
        capsys.readouterr()

    def test_resume_needs_a_model_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.zip"):
            train(CARTPOLE, 32, resume=tmp_path / "missing.zip")
