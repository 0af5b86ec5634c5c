"""The direct action heads (policies/action_heads.py) against SB3's distributions."""
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy

from sparsernn.policies.action_heads import log_prob_and_entropy, sample_actions

SPACES = {
    "discrete": spaces.Discrete(3),
    "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
    "multidiscrete": spaces.MultiDiscrete([2, 3]),  # SB3's distribution (fallback)
    "multibinary": spaces.MultiBinary(3),  # SB3's distribution (fallback)
}


def make_policy(space_name: str) -> ActorCriticPolicy:
    torch.manual_seed(0)
    policy = ActorCriticPolicy(spaces.Box(-1.0, 1.0, (4,), np.float32), SPACES[space_name], lambda _: 1e-3,
                               net_arch=[], log_std_init=-0.3).double()
    if hasattr(policy, "log_std"):  # a std that is not the same in every dimension
        with torch.no_grad():
            policy.log_std.copy_(torch.tensor([-0.3, 0.4], dtype=torch.float64))
    return policy


def reference_actions(policy, latent, deterministic):
    distribution = policy._get_action_dist_from_latent(latent)
    actions = distribution.get_actions(deterministic=deterministic)
    return actions, distribution.log_prob(actions)


@pytest.mark.parametrize("space_name", list(SPACES))
def test_log_prob_entropy_and_gradients_equal_sb3(space_name):
    policy = make_policy(space_name)
    latent = torch.randn(40, policy.mlp_extractor.latent_dim_pi, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        actions, _ = reference_actions(policy, latent, deterministic=False)
    actions = actions.double() if space_name == "box" else actions
    weights = torch.randn(2, 40, dtype=torch.float64)

    def loss_and_grads(log_prob, entropy):
        loss = (weights[0] * log_prob).sum() + (weights[1] * entropy).sum()
        return torch.autograd.grad(loss, [latent, *policy.parameters()], allow_unused=True)

    distribution = policy._get_action_dist_from_latent(latent)
    expected = distribution.log_prob(actions), distribution.entropy()
    got = log_prob_and_entropy(policy, latent, actions)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
    for g, e in zip(loss_and_grads(*got), loss_and_grads(*expected)):
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("space_name", list(SPACES))
@pytest.mark.parametrize("deterministic", [False, True])
def test_samples_equal_sb3_from_the_same_seed(space_name, deterministic):
    policy = make_policy(space_name)
    latent = torch.randn(2000, policy.mlp_extractor.latent_dim_pi, dtype=torch.float64)
    with torch.no_grad():
        torch.manual_seed(7)
        got = sample_actions(policy, latent, deterministic)
        torch.manual_seed(7)
        expected = reference_actions(policy, latent, deterministic)
    assert got[0].dtype == expected[0].dtype and got[0].shape == expected[0].shape
    torch.testing.assert_close(got[0], expected[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-12, atol=1e-12)
    if not deterministic and space_name == "discrete":  # a draw, not the mode
        assert not torch.equal(got[0], reference_actions(policy, latent, True)[0])


def test_categorical_samples_follow_the_probabilities():
    policy = make_policy("discrete")
    probs = torch.tensor([0.05, 0.15, 0.8], dtype=torch.float64)
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(probs.log() + 1.5)
    latent = torch.zeros(40000, policy.mlp_extractor.latent_dim_pi, dtype=torch.float64)
    torch.manual_seed(0)
    with torch.no_grad():
        actions, log_prob = sample_actions(policy, latent)
    frequencies = torch.bincount(actions, minlength=3).double() / len(actions)
    torch.testing.assert_close(frequencies, probs, rtol=0, atol=0.01)  # 5 standard errors
    torch.testing.assert_close(log_prob.exp(), probs[actions])


@pytest.mark.parametrize("space_name", ["discrete", "box"])
def test_nan_parameters_raise(space_name):
    policy = make_policy(space_name)
    latent = torch.randn(4, policy.mlp_extractor.latent_dim_pi, dtype=torch.float64)
    latent[2, 0] = float("nan")
    with pytest.raises(ValueError, match="contain NaN"):
        sample_actions(policy, latent)
    with pytest.raises(ValueError, match="contain NaN"):
        log_prob_and_entropy(policy, latent, torch.zeros(4, *policy.action_space.shape))
    # (SB3's own distributions raise too, unless torch.compile has run in the process: dynamo
    # switches torch.distributions' validation off globally. The heads check whatever ran.)
