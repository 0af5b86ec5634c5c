"""Our LSTM policy is sb3-contrib's ``MlpLstmPolicy`` with another recurrent kernel (docs/rl_parity.md, PendulumNoVel).

Given the same weights, ``SparseRecurrentPolicy(cell="lstm")`` acts, values and learns exactly as
``MlpLstmPolicy`` does on a continuous-action task with gSDE and ``VecNormalize``: the same rollout
(actions, values, log-probabilities, bootstrapped rewards of truncated episodes, recorded ``(h, c)``
states), the same gradient of every parameter on a chunk that crosses an episode start, and the same
deterministic evaluation. Its LSTM
weights start, by default, from exactly the weights stock draws at the same seed; drawn by the layer
(``recurrent_init="layer"``), from ``nn.LSTM``'s distribution. The update itself is pinned by
test_sequence_buffer.py.
"""
import numpy as np
import pytest
import torch
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from scipy import stats
from torch import nn

from sparsernn.agents import SparseRecurrentPPO
from sparsernn.agents.ppo import StockRecurrentPPO
from sparsernn.agents.training import evaluate, make_env
from sparsernn.core import SparseRecurrent

HIDDEN, N_ENVS, N_STEPS = 16, 2, 256  # Pendulum's episodes are 200 steps: one episode start inside each column
PPO = dict(n_steps=N_STEPS, batch_size=128, gamma=0.9, gae_lambda=0.95, n_epochs=1, use_sde=True, sde_sample_freq=4,
           seed=0, device="cpu")
POLICY = dict(activation_fn=nn.ReLU, ortho_init=False, enable_critic_lstm=True, net_arch=dict(pi=[16], vf=[16]))


def _stock_name(name):
    """sb3-contrib's name of our parameter ``name`` (``lstm_actor.layer.weight_ih`` -> ``lstm_actor.weight_ih_l0``)."""
    net, _, weight = name.partition(".layer.")
    return f"{net}.{weight}_l0" if weight else name


def _models(seed=0, **ours_kwargs):
    """sb3-contrib's model and ours, each built at SB3 ``seed`` on its own copy of the env."""
    stock = StockRecurrentPPO("MlpLstmPolicy", make_env("sparsernn/PendulumNoVel-v1", N_ENVS, 0, normalize=True),
                              policy_kwargs=dict(lstm_hidden_size=HIDDEN, **POLICY), **{**PPO, "seed": seed})
    stock_rng = torch.get_rng_state()
    ours = SparseRecurrentPPO("SparseRecurrentPolicy", make_env("sparsernn/PendulumNoVel-v1", N_ENVS, 0, normalize=True),
                              policy_kwargs=dict(hidden_size=HIDDEN, cell="lstm", **POLICY, **ours_kwargs),
                              **{**PPO, "seed": seed})
    return stock, ours, torch.equal(stock_rng, torch.get_rng_state())


@pytest.mark.parametrize("seed", [0, 1])
def test_default_lstm_starts_from_stocks_weights_and_leaves_torchs_generator_as_stock_does(seed):
    stock, ours, same_rng = _models(seed)
    stock_weights = stock.policy.state_dict()
    for name, parameter in ours.policy.named_parameters():
        assert torch.equal(parameter, stock_weights[_stock_name(name)]), name
    assert same_rng, "building our model drew from torch's generator where stock's does not"
    _, layer_init, _ = _models(seed, recurrent_init="layer")  # the layer's own draw: other values
    assert not torch.equal(layer_init.policy.lstm_actor.layer.weight_hh, ours.policy.lstm_actor.layer.weight_hh)


@pytest.mark.parametrize("options", [{"cell": "gru"}, {"density_hh": 0.5}, {"router_keep": 0.5},
                                     {"update_gate": "event"}, {"seed": 3}])
def test_stock_init_is_refused_where_the_layer_is_not_stocks_lstm_and_auto_falls_back(options):
    options = {"cell": "lstm", **options}
    with pytest.raises(ValueError, match="recurrent_init='stock'"):
        SparseRecurrentPPO("SparseRecurrentPolicy", "sparsernn/CartPoleNoVel-v1", n_steps=8, batch_size=8,
                           policy_kwargs=dict(hidden_size=8, recurrent_init="stock", **options))
    model = SparseRecurrentPPO("SparseRecurrentPolicy", "sparsernn/CartPoleNoVel-v1", n_steps=8, batch_size=8,
                               policy_kwargs=dict(hidden_size=8, **options))
    assert model.policy.lstm_actor.layer.seed != 0  # its own draw
    with pytest.raises(ValueError, match="recurrent_init must be"):
        SparseRecurrentPPO("SparseRecurrentPolicy", "sparsernn/CartPoleNoVel-v1", n_steps=8, batch_size=8,
                           policy_kwargs=dict(hidden_size=8, recurrent_init="torch"))


def _rollout(model):
    model._setup_learn(N_STEPS * N_ENVS, reset_num_timesteps=True)
    torch.manual_seed(1)  # gSDE's exploration matrices, drawn at the same calls by both
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def test_same_weights_same_rollout_and_gradients_as_mlp_lstm_policy_with_gsde():
    stock, ours, _ = _models(recurrent_init="layer")
    stock_weights = stock.policy.state_dict()
    with torch.no_grad():
        for name, parameter in ours.policy.named_parameters():
            parameter.copy_(stock_weights[_stock_name(name)])
    assert sum(p.numel() for p in ours.policy.parameters()) == sum(p.numel() for p in stock.policy.parameters())
    s, o = _rollout(stock), _rollout(ours)
    assert o.episode_starts[1:].any() and np.array_equal(s.episode_starts, o.episode_starts)
    for name in ("actions", "rewards", "values", "log_probs", "advantages", "returns"):
        np.testing.assert_allclose(getattr(o, name), getattr(s, name), rtol=1e-4, atol=1e-4, err_msg=name)
    for ours_states, h, c in ((o.hidden_states_pi, s.hidden_states_pi, s.cell_states_pi),
                              (o.hidden_states_vf, s.hidden_states_vf, s.cell_states_vf)):
        np.testing.assert_allclose(ours_states[..., :HIDDEN].numpy(), h, atol=1e-5)  # the packed state is [h | c]
        np.testing.assert_allclose(ours_states[..., HIDDEN:].numpy(), c, atol=1e-5)

    # One 128-step chunk of env 1 that crosses its episode start (step 200), from the recorded states.
    t0, env = 128, 1
    steps = slice(t0, t0 + 128)
    obs, actions = torch.as_tensor(o.observations[steps, env]), torch.as_tensor(o.actions[steps, env])
    starts = torch.as_tensor(o.episode_starts[steps, env])
    assert starts[1:].any()
    grads = {}
    for label, model, buffer in (("stock", stock, s), ("ours", ours, o)):
        states = RNNStates(*((torch.as_tensor(np.asarray(getattr(buffer, f"hidden_states_{net}")[t0, :, env:env + 1])),
                              torch.as_tensor(np.asarray(getattr(buffer, f"cell_states_{net}")[t0, :, env:env + 1])))
                             for net in ("pi", "vf")))
        model.policy.zero_grad()
        values, log_prob, entropy = model.policy.evaluate_actions(obs, actions, states, starts)
        (values.sum() + log_prob.sum() + 0.1 * (-log_prob if entropy is None else entropy).sum()).backward()
        grads[label] = {name: p.grad.clone() for name, p in model.policy.named_parameters()}
    for name, grad in grads["ours"].items():
        reference = grads["stock"][_stock_name(name)]
        error = (grad - reference).norm() / reference.norm().clamp_min(1e-12)
        assert error < 1e-4, f"grad {name}: relative difference {error:.2e}"

    # Deterministic evaluation (predict: gSDE's mean action, the (h, c) carried between steps).
    returns = [evaluate(model, "sparsernn/PendulumNoVel-v1", n_episodes=1, vec_normalize=stock.env, seed=7).returns
               for model in (stock, ours)]
    np.testing.assert_allclose(returns[1], returns[0], rtol=1e-5)


@pytest.mark.parametrize("hidden", [16, 64])
def test_lstm_initialisation_is_nn_lstm_s(hidden):
    """Same shapes, bound 1/sqrt(H) for weights and both biases, uniform: a KS test against nn.LSTM's draw."""
    torch.manual_seed(0)
    reference = nn.LSTM(8, hidden)
    layer = SparseRecurrent(8, hidden, cell="lstm", seed=0)
    bound = 1 / hidden ** 0.5
    for ours_name, torch_name in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                                  ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
        ours, theirs = getattr(layer, ours_name).detach(), getattr(reference, torch_name).detach()
        assert ours.shape == theirs.shape, ours_name
        assert ours.abs().max() <= bound and ours.abs().max() > 0.95 * bound, ours_name
        for gate in range(4):  # no gate (e.g. the forget gate) is initialised apart
            rows = slice(gate * hidden, (gate + 1) * hidden)
            assert stats.ks_2samp(ours[rows].flatten().numpy(), theirs[rows].flatten().numpy()).pvalue > 1e-3, \
                f"{ours_name} gate {gate}"
