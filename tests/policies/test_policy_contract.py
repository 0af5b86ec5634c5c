"""SparseRecurrentPolicy: options reach the layer, shapes, resets, sb3-contrib options."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

import sparsernn.envs  # noqa: F401
from sparsernn.agents.ppo import folderless_logger
from sparsernn.core import SparseRecurrent
from sparsernn.policies import RecurrentCore, SparseRecurrentPolicy

CARTPOLE = "sparsernn/CartPoleNoVel-v1"
PENDULUM = "sparsernn/PendulumNoVel-v1"


def make_model(env_id=CARTPOLE, n_envs=2, **policy_kwargs):
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    policy_kwargs = {"hidden_size": 8, **policy_kwargs}
    model = RecurrentPPO(SparseRecurrentPolicy, env, n_steps=8, batch_size=16, n_epochs=1,
                         policy_kwargs=policy_kwargs, seed=0, device="cpu")
    model.set_logger(folderless_logger())  # stock SB3 would make <tmp>/SB3-<time> on learn()
    return model


class TestOptions:
    def test_every_layer_option_reaches_the_layer(self):
        model = make_model(cell="lstm", density_ih=0.5, density_hh=0.25, router_keep=(1.0, 0.5), router_rank=3,
                           update_gate="rhythm", rhythm_frequencies=2, rhythm_max_period=50.0,
                           target_update_rate=0.3, update_rate_weight=2.0, router_balance_weight=0.1,
                           backend="reference", seed=7)
        layer = model.policy.lstm_actor.layer
        assert isinstance(layer, SparseRecurrent)
        assert (layer.cell, layer.hidden_size, layer.update_gate) == ("lstm", 8, "rhythm")
        assert (layer.density_ih, layer.density_hh, layer.router_keep) == (0.5, 0.25, (1.0, 0.5))
        assert (layer.target_update_rate, layer.update_rate_weight, layer.router_balance_weight) == (0.3, 2.0, 0.1)
        assert layer.seed == 7 and model.policy.lstm_critic.layer.seed == 8
        assert model.policy.lstm_actor.hidden_size == layer.state_size == 2 * 8 + 1

    def test_budget_specification_solves_the_densities(self):
        model = make_model(param_budget=120, hidden_proportion=0.5, hidden_size=None)
        layer = model.policy.lstm_actor.layer
        assert sum(layer.trainable_counts()) == 120
        assert layer.statistics()["hidden_proportion"] == pytest.approx(0.5)

    @pytest.mark.parametrize("kwargs, error", [
        ({"cell": "rnn"}, ValueError),
        ({"density_hh": 1.5}, ValueError),
        ({"param_budget": 100}, ValueError),
        ({"param_budget": 100, "hidden_proportion": 0.5, "density_hh": 0.5}, ValueError),
        ({"n_lstm_layers": 2}, ValueError),
        ({"lstm_kwargs": {"dropout": 0.1}}, TypeError),
        ({"kernel": "cuda"}, ValueError),
        ({"backend": "cuda"}, ValueError),
    ])
    def test_bad_options_fail_early_naming_the_argument(self, kwargs, error):
        with pytest.raises(error) as info:
            make_model(**kwargs)
        assert any(name in str(info.value) for name in list(kwargs) + ["cell", "kernel", "backend"])

    def test_sb3_contrib_options_keep_their_meaning(self):
        model = make_model(shared_lstm=True, enable_critic_lstm=False, net_arch=dict(pi=[5], vf=[6]),
                           activation_fn=nn.ReLU, ortho_init=False)
        policy = model.policy
        assert policy.lstm_critic is None and policy.critic is None and policy.shared_lstm
        assert policy.mlp_extractor.policy_net[0].out_features == 5
        assert policy.mlp_extractor.value_net[0].out_features == 6
        assert isinstance(policy.mlp_extractor.policy_net[1], nn.ReLU)
        model.learn(32)

    def test_feed_forward_critic_has_the_layer_width(self):
        model = make_model(enable_critic_lstm=False, hidden_size=12)
        assert model.policy.critic.out_features == 12
        model.learn(32)


class TestShapesAndResets:
    @pytest.mark.parametrize("env_id", [CARTPOLE, PENDULUM])
    def test_predict_returns_actions_and_packed_state(self, env_id):
        model = make_model(env_id, n_envs=3, cell="lstm")
        obs = model.env.reset()
        actions, state = model.predict(obs, episode_start=np.ones(3, dtype=bool))
        assert actions.shape == (3, *model.action_space.shape)
        assert state[0].shape == (1, 3, 16)
        assert isinstance(model.action_space, (gym.spaces.Box, gym.spaces.Discrete))

    def test_episode_start_resets_the_state(self):
        model = make_model()
        obs = model.env.reset()
        policy = model.policy
        _, fresh = policy.predict(obs, None, np.ones(2, dtype=bool), deterministic=True)
        junk = (np.full_like(fresh[0], 3.0), np.full_like(fresh[0], 3.0))
        _, reset = policy.predict(obs, junk, np.ones(2, dtype=bool), deterministic=True)
        _, carried = policy.predict(obs, junk, np.zeros(2, dtype=bool), deterministic=True)
        np.testing.assert_allclose(reset[0], fresh[0], atol=1e-6)
        assert not np.allclose(carried[0], fresh[0])

    @pytest.mark.parametrize("backend", ["fused", "reference"])
    def test_one_call_with_resets_equals_stepping(self, backend):
        layer = SparseRecurrent(3, 5, cell="gru", density_hh=0.5, backend=backend, seed=0)
        core = RecurrentCore(layer)
        n_seq, length = 4, 6
        features = torch.randn(n_seq * length, 3)
        starts = (torch.rand(n_seq * length) < 0.3).float()
        state = torch.randn(1, n_seq, 5)
        out, (final, _) = SparseRecurrentPolicy._process_sequence(features, (state, state), starts, core)
        assert core.last_backend == backend
        assert out.shape == (n_seq * length, 5)
        seq_x = features.view(n_seq, length, 3)
        seq_starts = starts.view(n_seq, length)
        h = state[0]
        stepped = []
        for t in range(length):
            y, h = layer(seq_x[:, t:t + 1].transpose(0, 1), h, seq_starts[:, t:t + 1].T)
            stepped.append(y[0])
        expected = torch.stack(stepped, 1).reshape(n_seq * length, 5)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(final[0], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options, backend, expected", [
    ({"update_gate": "event"}, "auto", "fused"), ({"cell": "elman", "density_hh": 0.5}, "auto", "fused"),
    ({"router_keep": 0.5}, "auto", "fused"), ({}, "reference", "reference"),
    ({"router_keep": 0.5}, "reference", "reference")])
def test_adapter_runs_layers_on_the_fused_backend(options, backend, expected):
    """The layer picks the kernel (``auto``: fused at RL's shapes on a CPU); the adapter shows which ran."""
    layer = SparseRecurrent(4, 8, backend=backend, seed=0, **options)
    core = RecurrentCore(layer)
    core(torch.randn(5, 2, 4), core.initial_states(2), torch.zeros(5, 2))
    assert (core.last_backend, core.last_group_size) == (expected, 1)


class TestGroupedActorCritic:
    @pytest.mark.parametrize("env_id, options", [(CARTPOLE, {"cell": "lstm"}), (PENDULUM, {"cell": "lstm"}),
                                                 (CARTPOLE, {"cell": "gru", "update_gate": "event"})])
    def test_grouped_forward_and_evaluation_equal_the_core_path(self, env_id, options):
        fused = make_model(env_id, seed=3, **options)
        core = make_model(env_id, seed=3, backend="reference", **options)
        core.policy.load_state_dict(fused.policy.state_dict())
        obs = torch.randn(2 * 5, 2)
        starts = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 0, 1, 0])
        state = torch.randn(1, 2, fused.policy.lstm_actor.hidden_size)
        states = RNNStates((state, state), (state * 2, state * 2))
        actions = torch.zeros(10, *fused.action_space.shape) if fused.action_space.shape else torch.zeros(10)
        got = fused.policy.evaluate_actions(obs, actions, states, starts)
        for adapter in (fused.policy.lstm_actor, fused.policy.lstm_critic):
            assert (adapter.last_backend, adapter.last_group_size) == ("fused", 2)
        expected = core.policy.evaluate_actions(obs, actions, states, starts)
        assert (core.policy.lstm_actor.last_backend, core.policy.lstm_actor.last_group_size) == ("reference", 1)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        torch.manual_seed(0)
        act_got = fused.policy(obs[:2], states, starts[:2], deterministic=True)
        act_expected = core.policy(obs[:2], states, starts[:2], deterministic=True)
        for g, e in zip(act_got[:3], act_expected[:3]):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(act_got[3].vf[0], act_expected[3].vf[0], rtol=1e-5, atol=1e-6)
