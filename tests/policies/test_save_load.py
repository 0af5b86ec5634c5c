"""save -> load predicts identically; masks and router survive training and reloading."""
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO
from sparsernn.agents.ppo import folderless_logger
from sparsernn.policies import SparseRecurrentPolicy

from .conftest import rollout

CONFIGS = {
    "sparse-gru": {"cell": "gru", "density_ih": 0.5, "density_hh": 0.25},
    "routed-lstm": {"cell": "lstm", "router_keep": 0.5, "density_hh": 0.5},
    "rhythm-gru": {"cell": "gru", "update_gate": "rhythm", "target_update_rate": 0.5},
}



@pytest.mark.parametrize("algo", [RecurrentPPO, SparseRecurrentPPO])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_save_load_predicts_identically_and_keeps_masks(tmp_path, algo, config):
    env = VecNormalize(make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0))
    model = algo(SparseRecurrentPolicy, env, n_steps=8, batch_size=16, n_epochs=2, seed=0, device="cpu",
                 policy_kwargs={"hidden_size": 8, **CONFIGS[config]})
    model.set_logger(folderless_logger())  # stock SB3 would make <tmp>/SB3-<time> on learn()
    layer = model.policy.lstm_actor.layer
    mask_before = layer.mask_hh.clone()
    model.learn(48)
    assert torch.equal(layer.mask_hh, mask_before), "training changed the mask"
    assert torch.all(layer.weight_hh[layer.mask_hh == 0] == 0), "masked weights moved during training"
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", device="cpu")
    loaded_layer = loaded.policy.lstm_actor.layer
    for name, tensor in layer.state_dict().items():
        assert torch.equal(loaded_layer.state_dict()[name], tensor), f"{name} differs after loading"
    obs = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    expected, expected_state = rollout(model, obs, 6)
    got, got_state = rollout(loaded, obs, 6)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got_state[0], expected_state[0], rtol=0, atol=0)


def test_policy_save_load_roundtrip(tmp_path):
    env = make_vec_env("sparsernn/PendulumNoVel-v1", n_envs=1, seed=0)
    model = SparseRecurrentPPO(SparseRecurrentPolicy, env, n_steps=8, batch_size=8, seed=0, device="cpu",
                               policy_kwargs={"param_budget": 100, "hidden_proportion": 0.6,
                                              "hidden_size": None})
    model.policy.save(tmp_path / "policy.pt")
    loaded = SparseRecurrentPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert loaded.hidden_size == model.policy.hidden_size
    obs = np.zeros((1, 2), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0],
                                  model.policy.predict(obs, deterministic=True)[0])
