"""The policy's rule for a single router_keep fraction: hidden side only when the observation is narrow."""
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents.ppo import folderless_logger
from sparsernn.policies import SparseRecurrentPolicy
from sparsernn.policies.options import policy_router_keep


def layers_of(hidden_size, router_keep):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)  # 2 observations
    model = RecurrentPPO(SparseRecurrentPolicy, env, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu",
                         policy_kwargs={"hidden_size": hidden_size, "router_keep": router_keep})
    model.set_logger(folderless_logger())
    return model.policy.recurrent_layers.values()


def test_a_fraction_on_a_narrow_observation_routes_the_hidden_side_only_and_says_so():
    for layer in layers_of(20, 0.1):
        assert layer.router_keep == (1.0, 0.1)
        layer(torch.randn(3, 2, layer.input_size))
        stats = layer.statistics()
        assert stats["active_input_fraction"] == 1.0 and stats["active_hidden_fraction"] == 2 / 20


def test_a_pair_is_taken_as_given():
    assert all(layer.router_keep == (0.5, 0.1) for layer in layers_of(20, (0.5, 0.1)))


def test_a_fraction_on_an_observation_as_wide_as_the_state_routes_both_sides():
    assert all(layer.router_keep == (0.5, 0.5) for layer in layers_of(2, 0.5))


@pytest.mark.parametrize("value, expected", [(None, None), (0.25, (1.0, 0.25)), ((0.3, 0.2), (0.3, 0.2)),
                                             (True, True), ("x", "x")])
def test_the_rule_passes_anything_else_through_for_the_layer_to_check(value, expected):
    assert policy_router_keep(value, 4, 64) == expected
    assert policy_router_keep(0.25, 64, 64) == 0.25


def test_a_bad_fraction_is_still_refused_naming_router_keep():
    with pytest.raises(ValueError, match="router_keep"):
        layers_of(20, 1.5)
