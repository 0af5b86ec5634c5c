"""Annealing the routed layers' keep from 1.0 to the target: the schedule, the exact final budget, refusals."""
import math

import pytest
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents import RouterKeepAnnealCallback, SparseRecurrentPPO
from sparsernn.agents.variants import VARIANTS

ROUTED = {"hidden_size": 20, "router_keep": (1.0, 0.1)}


def make_model(router_anneal, policy_kwargs=ROUTED, **kwargs):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    return SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0,
                              device="cpu", router_anneal=router_anneal, policy_kwargs=policy_kwargs, **kwargs)


class Recorder(RouterKeepAnnealCallback.__mro__[1]):  # a BaseCallback recording the layers' budget per rollout
    def __init__(self):
        super().__init__()
        self.seen = []

    def _on_rollout_start(self):
        layers = self.model.policy.recurrent_layers
        self.seen.append({name: layer.router_keep for name, layer in layers.items()})

    def _on_step(self):
        return True


def test_keep_starts_dense_falls_linearly_and_ends_exactly_at_the_target():
    model = make_model(0.5)
    recorder = Recorder()
    model.learn(160, callback=recorder)  # 10 rollouts of 16 steps
    hidden = [seen["actor"][1] for seen in recorder.seen]
    assert hidden[0] == 1.0
    assert all(a >= b for a, b in zip(hidden, hidden[1:])), hidden
    assert hidden[2] == pytest.approx(0.1 + 0.9 * (1 - (32 / 160) / 0.5))
    assert hidden[5:] == [0.1] * 5  # from half-way on: the target itself
    for layer in model.policy.recurrent_layers.values():
        assert layer.router_keep == (1.0, 0.1)  # exact, not approximately
        assert layer.statistics()["active_hidden_fraction"] == math.ceil(0.1 * 20) / 20
    assert all(seen["actor"] == seen["critic"] for seen in recorder.seen)


def test_the_target_is_exact_at_the_end_even_when_the_anneal_spans_all_training():
    model = make_model(1.0)
    model.learn(48)
    assert all(layer.router_keep == (1.0, 0.1) for layer in model.policy.recurrent_layers.values())


def test_no_anneal_routes_at_the_target_from_the_first_rollout():
    model = make_model(0.0)
    recorder = Recorder()
    model.learn(32, callback=recorder)
    assert [seen["actor"] for seen in recorder.seen] == [(1.0, 0.1)] * 2


def test_an_unrouted_policy_is_left_alone():
    model = make_model(0.5, policy_kwargs={"hidden_size": 8})
    model.learn(32)
    assert model.policy.recurrent_layers["actor"].router_keep is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "half"])
def test_bad_router_anneal_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="router_anneal"):
        make_model(bad)


@pytest.mark.parametrize("bad", [0, 1.5, None])
def test_bad_callback_fraction_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="fraction"):
        RouterKeepAnnealCallback(bad)


def test_anneal_variants_carry_the_ppo_option():
    assert VARIANTS["gru-router0.1-hidden-anneal"].ppo_kwargs == {"router_anneal": 0.25}


def test_annealing_over_the_first_quarter_is_the_default():
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=16, device="cpu",
                               policy_kwargs=ROUTED)
    assert model.router_anneal == 0.25
