"""Training writes nothing outside the directories the user names (SB3's default logger made <tmp>/SB3-<time>)."""
import tempfile

import pytest
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents import ALGOS, SparseRecurrentPPO, train
from sparsernn.agents.training import DEFAULT_POLICIES, MASKED_ALGOS
from sparsernn.policies import SparseRecurrentPolicy

TINY_PPO = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}


@pytest.fixture
def empty_tmp(tmp_path, monkeypatch):
    """An empty directory that ``tempfile.gettempdir()`` returns for the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    assert tempfile.gettempdir() == str(folder)
    return folder


def written(folder):
    """What training left in ``folder``, less torch.compile's cache (``torchinductor_<user>``: torch's, shared
    across runs, made by the first compile in a process — not a log of ours)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("torchinductor_"))


@pytest.mark.parametrize("verbose", [0, 1])
def test_learn_without_log_dir_writes_nothing(empty_tmp, verbose):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = SparseRecurrentPPO(SparseRecurrentPolicy, env, seed=0, device="cpu", verbose=verbose,
                               policy_kwargs={"hidden_size": 8}, **TINY_PPO)
    model.learn(32)
    model.learn(32, reset_num_timesteps=False)
    assert model.num_timesteps == 64
    assert written(empty_tmp) == []


def test_tensorboard_log_still_goes_to_its_directory(empty_tmp, tmp_path):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = SparseRecurrentPPO(SparseRecurrentPolicy, env, seed=0, device="cpu", tensorboard_log=str(tmp_path / "tb"),
                               policy_kwargs={"hidden_size": 8}, **TINY_PPO)
    model.learn(32)
    assert written(empty_tmp) == []
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["RecurrentPPO_1"]


@pytest.mark.parametrize("algo, policy_kwargs", [("sparse", {"hidden_size": 8}), ("recurrent", {"lstm_hidden_size": 8}),
                                                 ("ppo", {})])
def test_train_writes_only_into_save_dir(empty_tmp, tmp_path, algo, policy_kwargs):
    save_dir = tmp_path / "run"
    train("sparsernn/CartPoleNoVel-v1", 32, algo=algo, n_envs=2, seed=0, policy_kwargs=policy_kwargs,
          ppo_kwargs=TINY_PPO, eval_episodes=1, save_dir=save_dir, checkpoint_freq=16, eval_freq=16)
    assert written(empty_tmp) == []
    assert (save_dir / "model.zip").is_file()


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_algorithm_of_algos_writes_nothing(empty_tmp, algo):
    """What scripts (bench_rl) and train() build: ALGOS' stock classes differ from SB3's only in the logger.
    The masked ones need an env with action masks."""
    masked = issubclass(ALGOS[algo], MASKED_ALGOS)
    env = make_vec_env("sparsernn/MaskedCueMemory-v0" if masked else "sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = ALGOS[algo](DEFAULT_POLICIES[algo], env, seed=0, device="cpu", **TINY_PPO)
    model.learn(32)
    assert written(empty_tmp) == []


def test_stock_recurrent_ppo_with_our_policy_through_our_logger(empty_tmp):
    """Stock RecurrentPPO goes through our code only in ``train``; used directly, ``folderless_logger`` is the fix."""
    from sparsernn.agents.ppo import folderless_logger

    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = RecurrentPPO(SparseRecurrentPolicy, env, seed=0, device="cpu", policy_kwargs={"hidden_size": 8},
                         **TINY_PPO)
    model.set_logger(folderless_logger())
    model.learn(32)
    assert written(empty_tmp) == []
