"""A trained policy deep-copies; learn + predict on every device the suite can check (CPU, CUDA)."""
import copy

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO
from sparsernn.policies import SparseRecurrentPolicy

from .conftest import rollout

CARTPOLE = "sparsernn/CartPoleNoVel-v1"
#: Dense GRU, dense LSTM, a selective-update (gated) GRU and a routed sparse LSTM.
KINDS = {
    "gru": {"cell": "gru"},
    "lstm": {"cell": "lstm"},
    "gated": {"cell": "gru", "update_gate": "event"},
    "routed": {"cell": "lstm", "router_keep": 0.5, "density_hh": 0.5},
}


def make_model(kind, device="cpu", n_envs=2):
    env = make_vec_env(CARTPOLE, n_envs=n_envs, seed=0)
    return SparseRecurrentPPO(SparseRecurrentPolicy, env, n_steps=16, batch_size=32, n_epochs=2, seed=0,
                              device=device, policy_kwargs={"hidden_size": 8, **KINDS[kind]})


@pytest.mark.parametrize("kind", ["gated", "routed"])
def test_trained_policy_deepcopies_and_predicts_the_same(kind):
    model = make_model(kind)
    model.learn(256)  # grad-mode forwards in every PPO update
    try:
        clone = copy.deepcopy(model.policy)
    except RuntimeError as error:  # raised again without deepcopy's frames, whose locals take pytest minutes to print
        raise RuntimeError(f"deepcopy of the trained {kind} policy failed: {error}") from None
    for (name, a), b in zip(model.policy.state_dict().items(), clone.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs in the copy"
    obs = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    expected, expected_state = rollout(model.policy, obs, 5)
    got, got_state = rollout(clone, obs, 5)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got_state[0], expected_state[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_learns_and_predicts_on_each_device(kind, device):
    model = make_model(kind, device=device)
    model.learn(64)
    assert model.num_timesteps == 64
    for name, tensor in model.policy.state_dict().items():
        assert tensor.device.type == device.type, f"{name} is on {tensor.device}, not {device}"
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), f"{name} is not finite after training"
    layer = model.policy.lstm_actor.layer
    if layer.mask_hh is not None:
        assert torch.all(layer.weight_hh[layer.mask_hh == 0] == 0), "masked weights moved during training"
    obs = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    actions, state = rollout(model.policy, obs, 5)
    assert actions.shape == (5, 3) and set(np.unique(actions)) <= {0, 1}
    assert isinstance(state[0], np.ndarray) and np.isfinite(state[0]).all()
