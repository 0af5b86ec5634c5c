"""The layers' aux loss reaches the optimiser, and the sparsity statistics reach SB3's logger."""

import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SparseRecurrentPPO, SparsityLoggerCallback

GATED = {"hidden_size": 8, "update_gate": "event", "target_update_rate": 0.05,
         "update_rate_weight": 10.0}


def make_model(aux_loss_coef, policy_kwargs=GATED, **kwargs):
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    return SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0,
                              device="cpu", aux_loss_coef=aux_loss_coef, policy_kwargs=policy_kwargs, **kwargs)


class TestAuxLoss:
    def test_aux_loss_changes_the_update(self):
        """Same seed, same rollout: only the aux weight differs, so only it can change the gate's update."""
        without, with_aux = make_model(0.0), make_model(1.0)
        without.learn(16)
        with_aux.learn(16)
        gate_without = without.policy.lstm_actor.layer.gate.state_dict()
        gate_with = with_aux.policy.lstm_actor.layer.gate.state_dict()
        assert any(not torch.equal(gate_without[k], gate_with[k]) for k in gate_with)

    def test_aux_loss_pushes_the_update_rate_towards_its_target(self):
        model = make_model(1.0, learning_rate=1e-2)
        policy = model.policy
        obs = torch.randn(32 * 2, 2)
        starts = torch.zeros(32 * 2)
        states = policy.lstm_actor.initial_states(2)

        def rate_after(update: bool) -> float:
            policy._process_sequence(obs, states, starts, policy.lstm_actor)
            if update:
                policy.optimizer.zero_grad()
                (model.aux_loss_coef * policy.lstm_actor.layer.aux_loss()).backward()
                policy.optimizer.step()
            return policy.lstm_actor.layer.statistics()["update_rate"]

        before = rate_after(update=False)
        for _ in range(30):
            rate_after(update=True)
        assert rate_after(update=False) < before - 0.05

    def test_train_logs_the_aux_loss(self, tmp_path):
        model = make_model(1.0)
        model.set_logger(configure(str(tmp_path), ["csv"]))  # keep name_to_value inspectable (None: <tmp>/SB3-*)
        recorded = {}
        original = model.logger.record

        def spy(key, value, exclude=None):
            recorded[key] = value
            original(key, value, exclude)

        model.logger.record = spy
        model.learn(16)
        assert recorded["train/aux_loss"] > 0

    @pytest.mark.parametrize("coef", [-1.0, "1"])
    def test_bad_coefficient_fails_early(self, coef):
        with pytest.raises(ValueError, match="aux_loss_coef"):
            make_model(coef)


def test_callback_logs_sparsity_statistics_to_tensorboard(tmp_path):
    policy_kwargs = {**GATED, "density_hh": 0.5, "router_keep": 0.5}
    model = make_model(1.0, policy_kwargs, tensorboard_log=str(tmp_path))
    model.learn(48, callback=SparsityLoggerCallback(), tb_log_name="run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(tmp_path.glob("run_*"))))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for role in ("actor", "critic"):
        for name in ("density_ih", "density_hh", "hidden_proportion", "active_input_fraction",
                     "active_hidden_fraction", "update_rate"):
            assert f"sparsity/{role}/{name}" in tags
    assert "sparsity/aux_loss" in tags and "train/aux_loss" in tags
    density = events.Scalars("sparsity/actor/density_hh")[-1].value
    assert density == pytest.approx(0.5, abs=0.01)
    assert events.Scalars("sparsity/actor/active_hidden_fraction")[-1].value == pytest.approx(0.5)


def test_routed_policy_logs_realised_fractions_and_usage_histograms(tmp_path):
    """A routed policy trained a few hundred steps: TensorBoard holds, per layer, the realised keep
    fractions (exactly the budgets), the per-channel usage histograms and the unused-channel shares."""
    policy_kwargs = {"hidden_size": 16, "router_keep": (0.5, 0.25), "backend": "fused"}
    # router_anneal=0: the final budget from the first update (annealing would start it at 1.0)
    model = make_model(1.0, policy_kwargs, tensorboard_log=str(tmp_path), router_anneal=0.0)
    model.learn(256, callback=SparsityLoggerCallback(), tb_log_name="run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(tmp_path.glob("run_*"))), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    scalars, histograms = set(events.Tags()["scalars"]), set(events.Tags()["histograms"])
    n_updates = 256 // 16 - 1  # logged at the start of every rollout after the first update
    for role in ("actor", "critic"):
        fractions = {"input": 0.5, "hidden": 4 / 16}  # ceil(0.5 * 2) of 2 inputs, ceil(0.25 * 16) of 16
        for side, budget in fractions.items():
            values = [e.value for e in events.Scalars(f"sparsity/{role}/active_{side}_fraction")]
            assert len(values) == n_updates
            assert values == [pytest.approx(budget, abs=1e-7)] * n_updates  # float32 in the event file
            assert f"sparsity/{role}/unused_{side}_fraction" in scalars
            usage = events.Histograms(f"sparsity/{role}/{side}_usage")
            assert len(usage) == n_updates
            last = usage[-1].histogram_value
            width = 2 if side == "input" else 16
            assert last.num == width  # one value per channel
            assert last.sum == pytest.approx(budget * width, rel=1e-6)  # the shares sum to the kept count
            assert 0.0 <= last.min <= last.max <= 1.0
    assert not any(tag.startswith("sparsity/") for tag in histograms - {
        f"sparsity/{role}/{side}_usage" for role in ("actor", "critic") for side in ("input", "hidden")})


def test_gated_policy_logs_update_rate_histograms(tmp_path):
    """A gated policy trained a few updates: TensorBoard holds, per layer, the update rate, the computed
    fraction (the selective loops compute only the open pairs: the update rate, a layer set 0.3 open
    runs them), the histogram over neurons of each neuron's open share (its mean is the update rate)
    and the share of neurons never open."""
    hidden = 16
    policy_kwargs = {"hidden_size": hidden, "update_gate": "rhythm", "initial_update_rate": 0.3, "backend": "fused"}
    model = make_model(1.0, policy_kwargs, tensorboard_log=str(tmp_path))
    model.learn(64, callback=SparsityLoggerCallback(), tb_log_name="run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(tmp_path.glob("run_*"))), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    histograms = set(events.Tags()["histograms"])
    n_updates = 64 // 16 - 1  # logged at the start of every rollout after the first update
    for role in ("actor", "critic"):
        computed = [e.value for e in events.Scalars(f"sparsity/{role}/computed_fraction")]
        rates = [e.value for e in events.Scalars(f"sparsity/{role}/update_rate")]
        assert len(computed) == n_updates and computed == pytest.approx(rates, rel=1e-6)
        assert all(0.0 < value < 1.0 for value in computed)
        rate = rates[-1]
        usage = events.Histograms(f"sparsity/{role}/neuron_update_rate")
        assert len(usage) == n_updates
        last = usage[-1].histogram_value
        assert last.num == hidden  # one value per neuron
        assert last.sum / hidden == pytest.approx(rate, rel=1e-5)
        assert 0.0 <= last.min <= last.max <= 1.0 and last.min < last.max
        never = events.Scalars(f"sparsity/{role}/never_open_fraction")[-1].value
        assert 0.0 <= never < 1.0
    assert histograms == {f"sparsity/{role}/neuron_update_rate" for role in ("actor", "critic")}
