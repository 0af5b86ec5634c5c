"""Arguments of train() / evaluate() and of the command line are checked before any env or model is built."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsernn.agents import SparseRecurrentPPO, evaluate, load_config, train
from sparsernn.agents import training as training_module
from sparsernn.agents.cli import main

CARTPOLE = "sparsernn/CartPoleNoVel-v1"
TINY = dict(n_envs=2, policy_kwargs={"hidden_size": 8}, ppo_kwargs={"n_steps": 16, "batch_size": 32, "n_epochs": 1},
            eval_episodes=0)


@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if an env is made (the first piece of work of train and evaluate)."""
    def refuse(*args, **kwargs):
        raise AssertionError("an env was built before the arguments were checked")

    monkeypatch.setattr(training_module, "make_env", refuse)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"total_timesteps": -5}, ValueError, "total_timesteps"),
    ({"total_timesteps": 0}, ValueError, "total_timesteps"),
    ({"total_timesteps": 10.5}, ValueError, "total_timesteps"),
    ({"total_timesteps": "1e3"}, TypeError, "total_timesteps"),
    ({"n_envs": 0}, ValueError, "n_envs"),
    ({"eval_episodes": -1}, ValueError, "eval_episodes"),
    ({"seed": 2**70}, ValueError, "seed"),
    ({"seed": -1}, ValueError, "seed"),
    ({"checkpoint_freq": -1}, ValueError, "checkpoint_freq"),
    ({"verbose": True}, TypeError, "verbose"),
    ({"ppo_kwargs": {"n_steps": 0}}, ValueError, "n_steps"),
    ({"policy_kwargs": [1]}, TypeError, "policy_kwargs"),
    ({"normalize": "yes"}, TypeError, "normalize"),
    ({"algo": "dqn"}, ValueError, "algo"),
    ({"checkpoint_freq": 10}, ValueError, "save_dir"),
    ({"overwrite": 1}, TypeError, "overwrite"),
])
def test_train_refuses_before_any_work(nothing_built, kwargs, error, match):
    with pytest.raises(error, match=match):
        train(CARTPOLE, **{"total_timesteps": 32, **kwargs})


def test_integral_floats_and_numpy_scalars_are_accepted():
    result = train(CARTPOLE, np.float64(32.0), seed=np.int64(3), **{**TINY, "n_envs": np.int32(2)})
    assert result.model.num_timesteps == 32 and result.model.n_envs == 2 and result.model.seed == 3


@pytest.mark.parametrize("kwargs, match", [({"n_episodes": 0}, "n_episodes"), ({"seed": 2**70}, "seed"),
                                           ({"vec_normalize": 3}, "vec_normalize")])
def test_evaluate_refuses_before_any_work(nothing_built, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        evaluate(object(), CARTPOLE, **{"n_episodes": 1, **kwargs})


def test_yaml_exponent_counts_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"env_id: {CARTPOLE}\ntotal_timesteps: 1e3\nppo_kwargs: {{ent_coef: 1e-3, n_steps: 1.6e1}}\n")
    config = load_config(path)
    assert config["total_timesteps"] == 1000.0 and config["ppo_kwargs"] == {"ent_coef": 0.001, "n_steps": 16.0}


def test_yaml_config_with_exponents_trains(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"env_id: {CARTPOLE}\ntotal_timesteps: 3.2e1\nn_envs: 2\neval_episodes: 0\n"
                    "policy_kwargs: {hidden_size: 8}\nppo_kwargs: {n_steps: 1.6e1, batch_size: 32, n_epochs: 1}\n")
    assert main(["train", "--config", str(path), "--no-progress-bar"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("argv, flag", [
    (["--total-timesteps", "-5"], "--total-timesteps"),
    (["--total-timesteps", "10.5"], "--total-timesteps"),
    (["--n-envs", "0"], "--n-envs"),
    (["--eval-episodes", "-1"], "--eval-episodes"),
    (["--seed", str(2**70)], "--seed"),
    (["--n-steps", "0"], "--n-steps"),
    (["--hidden-size", "x"], "--hidden-size"),
])
def test_cli_exits_2_naming_the_flag(nothing_built, capsys, argv, flag):
    with pytest.raises(SystemExit) as info:
        main(["train", "--env", CARTPOLE, *argv])
    assert info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("line, key", [("total_timesteps: -5", "total_timesteps"), ("n_envs: 0", "n_envs"),
                                       ("eval_episodes: -1", "eval_episodes"), ("seed: 1180591620717411303424", "seed"),
                                       ("total_timesteps: 1e3x", "total_timesteps")])
def test_cli_exits_2_naming_the_config_key(nothing_built, tmp_path, capsys, line, key):
    path = tmp_path / "c.yaml"
    path.write_text(f"env_id: {CARTPOLE}\n{line}\n")
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(path)])
    assert info.value.code == 2 and key in capsys.readouterr().err


def test_cli_evaluate_episodes_checked(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "missing.zip", "--env", CARTPOLE, "--episodes", "0"])
    assert info.value.code == 2 and "argument --episodes" in capsys.readouterr().err


bad_counts = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda x: not (x == x and abs(x) != float("inf") and x.is_integer() and x >= 1)))


@settings(max_examples=40, deadline=None)
@given(flag=st.sampled_from(["--total-timesteps", "--n-envs", "--n-steps", "--batch-size"]), value=bad_counts)
def test_random_bad_counts_exit_2_before_any_model(flag, value):
    built = []
    original = SparseRecurrentPPO.__init__
    SparseRecurrentPPO.__init__ = lambda self, *a, **k: built.append(1) or original(self, *a, **k)
    try:
        with pytest.raises(SystemExit) as info:
            main(["train", "--env", CARTPOLE, flag, repr(value) if isinstance(value, float) else str(value)])
    finally:
        SparseRecurrentPPO.__init__ = original
    assert info.value.code == 2 and built == []


non_integral = st.floats().filter(lambda x: not (x == x and abs(x) != float("inf") and x.is_integer()))
#: Values each argument must refuse: below its minimum, not whole, not a number; seeds also past 2**32.
BAD = {
    "total_timesteps": st.one_of(st.integers(max_value=0), non_integral, st.text(max_size=3), st.booleans(), st.none()),
    "n_envs": st.one_of(st.integers(max_value=0), non_integral, st.text(max_size=3), st.booleans(), st.none()),
    "eval_episodes": st.one_of(st.integers(max_value=-1), non_integral, st.text(max_size=3), st.booleans()),
    "checkpoint_freq": st.one_of(st.integers(max_value=-1), non_integral, st.booleans()),
    "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32), non_integral, st.text(max_size=3),
                      st.booleans()),
}


@settings(max_examples=50, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(BAD)))
def test_random_bad_train_arguments_raise_before_any_work(data, name):
    value = data.draw(BAD[name], label=name)
    original = training_module.make_env
    training_module.make_env = lambda *a, **k: pytest.fail("an env was built")
    try:
        with pytest.raises((TypeError, ValueError), match=name):
            train(CARTPOLE, **{"total_timesteps": 32, name: value})
    finally:
        training_module.make_env = original
