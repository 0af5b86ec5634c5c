"""The command line offers every layer option (derived from the layer, so it cannot drift), with checked types."""
import inspect

import pytest

from sparsernn.agents.cli import build_parser, train_kwargs
from sparsernn.core import SparseRecurrent

CARTPOLE = "sparsernn/CartPoleNoVel-v1"
CALLERS_ARGUMENTS = {"self", "input_size", "hidden_size", "seed", "dtype", "device"}


def train_flags() -> dict[str, str]:
    """``{dest: option string}`` of the ``train`` command."""
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return {action.dest: action.option_strings[0] for action in train._actions if action.option_strings}


def test_every_layer_option_has_a_flag():
    layer_options = set(inspect.signature(SparseRecurrent.__init__).parameters) - CALLERS_ARGUMENTS
    flags = train_flags()
    missing = sorted(layer_options - set(flags))
    assert not missing, f"no flag for layer option(s) {missing}"
    for name in layer_options:
        assert flags[name] == "--" + name.replace("_", "-")


@pytest.mark.parametrize("argv, key, value", [
    (["--backend", "fused"], "backend", "fused"), (["--backend", "compiled"], "backend", "compiled"),
    (["--cell", "elman"], "cell", "elman"), (["--update-gate", "rhythm"], "update_gate", "rhythm"),
    (["--router-rank", "3"], "router_rank", 3), (["--rhythm-frequencies", "1e1"], "rhythm_frequencies", 10),
    (["--rhythm-max-period", "50"], "rhythm_max_period", 50.0),
    (["--router-keep", "1", "0.5"], "router_keep", (1.0, 0.5)),
    (["--rhythm-periods", "288", "2016"], "rhythm_periods", [288.0, 2016.0]),
    (["--rhythm-learn-periods", "false"], "rhythm_learn_periods", False),
    (["--rhythm-learn-periods", "TRUE"], "rhythm_learn_periods", True),
])
def test_layer_flags_reach_the_policy_kwargs(argv, key, value):
    args = build_parser().parse_args(["train", "--env", CARTPOLE, *argv])
    assert train_kwargs(args)["policy_kwargs"][key] == value


@pytest.mark.parametrize("argv, flag", [
    (["--backend", "cuda"], "--backend"), (["--cell", "transformer"], "--cell"),
    (["--update-gate", "None"], "--update-gate"), (["--router-rank", "0"], "--router-rank"),
    (["--rhythm-frequencies", "2.5"], "--rhythm-frequencies"), (["--kernel", "fused"], "--kernel"),
    (["--rhythm-learn-periods", "no"], "--rhythm-learn-periods"), (["--rhythm-periods", "day"], "--rhythm-periods"),
])
def test_bad_layer_flags_exit_2_naming_the_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train", "--env", CARTPOLE, *argv])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_a_sequence_and_a_boolean_layer_option_build_the_policy(tmp_path):
    """Flags that are not one scalar (``rhythm_periods``) or are booleans reach a policy that uses them."""
    from sparsernn.agents import train

    args = build_parser().parse_args(["train", "--env", CARTPOLE, "--update-gate", "rhythm", "--rhythm-periods", "4",
                                      "16", "--rhythm-learn-periods", "false", "--hidden-size", "8"])
    kwargs = train_kwargs(args)
    result = train(kwargs["env_id"], total_timesteps=64, n_envs=1, policy_kwargs=kwargs["policy_kwargs"],
                   ppo_kwargs={"n_steps": 64, "batch_size": 64, "n_epochs": 1}, eval_episodes=0, seed=0)
    layer = result.model.policy.lstm_actor.layer
    assert layer.rhythm_periods is not None and [float(p) for p in layer.rhythm_periods] == [4.0, 16.0]
    assert layer.rhythm_learn_periods is False
    assert not any(name.endswith("omega") for name, _ in layer.named_parameters())
    assert any(name.endswith("omega") for name, _ in layer.named_buffers())  # fixed periods: a buffer
