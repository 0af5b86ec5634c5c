"""Dict observation spaces on the fast path: CombinedExtractor, the whole-column buffer, the same update."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor
from stable_baselines3.common.vec_env import DummyVecEnv

import sparsernn.envs  # noqa: F401
from sparsernn.agents import (MaskableSparseRecurrentPPO, SequenceRolloutBuffer, SparseRecurrentPPO, load_model,
                              train)
from sparsernn.envs import DictCueMemoryEnv

ENV = "sparsernn/DictCueMemory-v0"
DICT = spaces.Dict({"cue": spaces.Discrete(5), "position": spaces.Box(-1e4, 1e4, (2,), np.float32)})


def test_the_dict_env_passes_gymnasium_and_sb3_checkers():
    gym_check_env(gym.make(ENV, render_mode="rgb_array").unwrapped, skip_render_check=False)
    sb3_check_env(DictCueMemoryEnv(), warn=True)


def filled_dict_buffer(n_steps=8, n_envs=3, chunk_length=4):
    """Keys encode ``(t, env)``: ``cue = env``, ``position = [t, 100 t + env]``."""
    buffer = SequenceRolloutBuffer(n_steps, DICT, spaces.Discrete(2), (n_steps, 1, n_envs, 2), "cpu", n_envs=n_envs,
                                   chunk_length=chunk_length)
    for t in range(n_steps):
        obs = {"cue": np.arange(n_envs), "position": np.array([[t, 100 * t + e] for e in range(n_envs)], np.float32)}
        state = torch.zeros(1, n_envs, 2)
        buffer.add(obs, np.zeros(n_envs), np.zeros(n_envs), np.zeros(n_envs, dtype=bool), torch.zeros(n_envs),
                   torch.zeros(n_envs), lstm_states=RNNStates((state, state), (state, state)))
    buffer.compute_returns_and_advantage(torch.zeros(n_envs), np.zeros(n_envs))
    return buffer


@pytest.mark.parametrize("chunk_length", [8, 4, 2])
def test_dict_observations_are_stored_per_key_and_chunked_together(chunk_length):
    buffer = filled_dict_buffer(chunk_length=chunk_length)
    assert set(buffer.observations) == {"cue", "position"}
    assert buffer.observations["cue"].shape == (8, 3, 1) and buffer.observations["position"].shape == (8, 3, 2)
    rows = 0
    for batch in buffer.get(2 * chunk_length):
        cue, position = batch.observations["cue"], batch.observations["position"]
        assert cue.shape == (len(position), 1)
        t, env = position[:, 0], position[:, 1] - 100 * position[:, 0]
        assert torch.equal(cue[:, 0], env), "keys of one row come from different steps"
        for seq in t.view(-1, chunk_length):
            assert torch.equal(seq, seq[0] + torch.arange(chunk_length, dtype=seq.dtype)), "chunk not contiguous"
        rows += len(t)
    assert rows == 24


def test_policy_defaults_to_combined_extractor_and_trains_on_whole_columns():
    env = make_vec_env(ENV, n_envs=2, seed=0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=10, batch_size=20, seed=0,
                               policy_kwargs=dict(hidden_size=8))
    assert isinstance(model.policy.features_extractor, CombinedExtractor)
    assert model.policy.features_dim == 4 + 1  # one-hot cue (n_cues + 1) and the position
    assert type(model.rollout_buffer) is SequenceRolloutBuffer
    model.learn(40)
    assert model.rollout_buffer.observations["cue"].shape == (10, 2, 1)
    chosen = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=10, batch_size=20,
                                policy_kwargs=dict(hidden_size=8, features_extractor_class=CombinedExtractor,
                                                   features_extractor_kwargs={"normalized_image": True}))
    assert isinstance(chosen.policy.features_extractor, CombinedExtractor)
    budget = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=10, batch_size=20, policy_kwargs=dict(
        hidden_size=None, param_budget=300, hidden_proportion=0.5))
    assert budget.policy.lstm_actor.input_size == 5
    with pytest.raises(Exception):  # what issue 16 reported: the flatten extractor cannot read a dict
        SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=10, batch_size=20,
                           policy_kwargs=dict(hidden_size=8, features_extractor_class=FlattenExtractor)).learn(20)


def test_update_equals_the_padded_dict_update_on_the_same_rollout(monkeypatch, same_update_as_sb3_contrib):
    """As tests/agents/test_sequence_buffer.py does for Box observations: our train() on whole columns and
    sb3-contrib's train() on its padded RecurrentDictRolloutBuffer take the same gradient step."""
    monkeypatch.setattr(np.random, "randint", lambda *args, **kwargs: 0)
    env = DummyVecEnv([lambda: DictCueMemoryEnv(gap=3), lambda: DictCueMemoryEnv(gap=2)])  # columns out of phase
    env.seed(0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=25, batch_size=50, n_epochs=1, seed=0,
                               device="cpu", learning_rate=1e-3,
                               policy_kwargs={"hidden_size": 8, "optimizer_class": torch.optim.SGD})
    model.learn(50)
    model._setup_learn(50, reset_num_timesteps=False)
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, model.n_steps)
    ours = model.rollout_buffer
    assert ours.episode_starts[1:].any(), "the test needs an episode start inside the rollout"
    stock = RecurrentDictRolloutBuffer(model.n_steps, model.observation_space, model.action_space,
                                       ours.hidden_state_shape, "cpu", model.gae_lambda, model.gamma, model.n_envs)
    stock.observations = {key: value.copy() for key, value in ours.observations.items()}
    for name in ("actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns"):
        setattr(stock, name, getattr(ours, name).copy())
    for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"):
        setattr(stock, name, getattr(ours, name).numpy().copy())
    stock.full = True
    same_update_as_sb3_contrib(model, stock)


def test_save_load_predict_with_dict_observations(tmp_path):
    result = train(ENV, 100, n_envs=2, seed=0, save_dir=tmp_path, eval_episodes=3,
                   policy_kwargs=dict(hidden_size=8), ppo_kwargs=dict(n_steps=25, batch_size=50))
    loaded = load_model(result.model_path)
    obs = {"cue": np.array([0, 3, 2]), "position": np.array([[0.0], [0.25], [1.0]], np.float32)}
    state_a = state_b = None
    starts = np.ones(3, dtype=bool)
    for _ in range(3):
        a, state_a = result.model.predict(obs, state_a, starts, deterministic=True)
        b, state_b = loaded.predict(obs, state_b, starts, deterministic=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(state_a[0], state_b[0])
        starts = np.zeros(3, dtype=bool)
    assert isinstance(loaded.policy.features_extractor, CombinedExtractor)


def test_maskable_with_dict_observations():
    """Masks and Dict observations together: answers 0 and 1 forbidden, never taken."""
    def forbid_low(env):
        return np.array([False, False, True])

    venv = DummyVecEnv([lambda: ActionMasker(gym.make(ENV), forbid_low)] * 2)
    model = MaskableSparseRecurrentPPO("MaskableSparseRecurrentPolicy", venv, n_steps=10, batch_size=20, seed=0,
                                       policy_kwargs=dict(hidden_size=8))
    model.learn(40)
    assert (model.rollout_buffer.actions == 2).all()
    batch = next(model.rollout_buffer.get(20))
    assert set(batch.observations) == {"cue", "position"} and batch.action_masks.shape == (20, 3)


@pytest.mark.slow
def test_recurrent_policy_learns_dict_cue_memory():
    """docs/rl_dict_observations.md's first row, seed 0 (1.00 measured; a memory-less policy gets ~1/3)."""
    from sparsernn.agents import load_config
    from sparsernn.agents.config import CONFIG_DIR

    result = train(**{**load_config(CONFIG_DIR / "dict_cue_memory.yaml"), "seed": 0})
    assert result.evaluation.success_rate >= 0.9
