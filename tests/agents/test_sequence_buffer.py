"""SequenceRolloutBuffer lays the rollout out as whole chunks, and PPO's update is unchanged by it."""
import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.agents import SequenceRolloutBuffer, SparseRecurrentPPO

N_STEPS, N_ENVS, WIDTH = 8, 3, 2


def filled_buffer(chunk_length=None):
    buffer = SequenceRolloutBuffer(N_STEPS, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), (N_STEPS, 1, N_ENVS, WIDTH),
                                   "cpu", n_envs=N_ENVS, chunk_length=chunk_length)
    for t in range(N_STEPS):
        obs = np.array([[100 * t + e] for e in range(N_ENVS)], dtype=np.float32)  # encodes (t, env)
        state = torch.tensor(obs[:, 0]).view(1, N_ENVS, 1).expand(1, N_ENVS, WIDTH)
        buffer.add(obs, np.zeros(N_ENVS), np.zeros(N_ENVS), np.array([t == 5, False, True]),
                   torch.zeros(N_ENVS), torch.zeros(N_ENVS), lstm_states=RNNStates((state, state), (state, state)))
    buffer.compute_returns_and_advantage(torch.zeros(N_ENVS), np.zeros(N_ENVS))
    return buffer


class TestLayout:
    @pytest.mark.parametrize("chunk_length", [None, 4, 2])
    def test_minibatches_are_whole_chunks_with_their_entry_state(self, chunk_length):
        length = chunk_length or N_STEPS
        buffer = filled_buffer(chunk_length)
        seen = set()
        for batch in buffer.get(2 * length):
            obs = batch.observations.view(-1, length)
            n_seq = obs.shape[0]
            assert batch.mask is None
            assert batch.lstm_states.pi[0].shape == (1, n_seq, WIDTH)
            for seq, entry in zip(obs, batch.lstm_states.pi[0][0, :, 0]):
                t0, env = divmod(int(seq[0]), 100)
                assert seq.tolist() == [100 * (t0 + k) + env for k in range(length)], "chunk is not contiguous"
                assert entry == seq[0], "entry state is not the one recorded at the chunk's first step"
                seen.add((t0, env))
            starts = batch.episode_starts.view(n_seq, length)
            for seq, flags in zip(obs, starts):
                for value, flag in zip(seq.tolist(), flags.tolist()):
                    t, env = divmod(int(value), 100)
                    assert flag == float((env == 0 and t == 5) or env == 2)
        assert len(seen) == N_ENVS * N_STEPS // length

    @pytest.mark.parametrize("batch_size", [3, 5, 100])
    def test_batch_size_must_hold_whole_chunks(self, batch_size):
        with pytest.raises(ValueError, match=f"batch_size={batch_size}"):
            next(filled_buffer(4).get(batch_size))

    def test_chunk_length_must_divide_n_steps(self):
        with pytest.raises(ValueError, match="chunk_length=3"):
            filled_buffer(3)

    def test_model_checks_batch_size_against_chunk_length(self):
        env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2)
        with pytest.raises(ValueError, match="batch_size=12"):
            SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=12)
        with pytest.raises(ValueError, match="batch_size=3"):  # shorter than a column but not dividing it
            SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=8, batch_size=3)

    @pytest.mark.parametrize(("n_steps", "batch_size", "chunk_length", "expected"),
                             [(8, 16, None, 8), (8, 4, None, 4), (8, 8, None, 8), (8, 4, 2, 2)])
    def test_default_chunk_is_the_column_or_a_shorter_minibatch(self, n_steps, batch_size, chunk_length, expected):
        env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2)
        model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=n_steps, batch_size=batch_size,
                                   chunk_length=chunk_length)
        assert model.rollout_buffer.chunk_length == expected
        model.learn(2 * n_steps * 2)  # two rollouts: minibatches of batch_size samples in whole chunks


@pytest.mark.parametrize("policy_kwargs", [{"cell": "gru"}, {"cell": "gru", "backend": "reference"}, {"cell": "lstm"},
                                           {"cell": "lstm", "density_hh": 0.5, "backend": "reference"}])
def test_update_equals_sb3_contrib_update_on_the_same_rollout(policy_kwargs, monkeypatch,
                                                             same_update_as_sb3_contrib):
    """One PPO epoch on one full-batch minibatch: our train() on whole columns and
    sb3-contrib's train() on its padded episodes compute the same (clipped) gradient
    of every parameter and take the same step.

    sb3-contrib rotates the flattened rollout by a random offset, which also cuts
    one column's backpropagation at that point; the offset is pinned to 0 here.
    The gradients are compared, not the parameter changes: a float32 parameter of
    size 0.1 resolves a step of 1e-6 to only ~1e-2 relative precision.
    """
    monkeypatch.setattr(np.random, "randint", lambda *args, **kwargs: 0)
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=2, seed=0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=64, batch_size=128, n_epochs=1, seed=0,
                               device="cpu", learning_rate=1e-3, policy_kwargs={
                                   "hidden_size": 8, "optimizer_class": torch.optim.SGD,
                                   **policy_kwargs})
    model.learn(128)  # a first update, then collect a fresh rollout with episode ends inside
    model._setup_learn(128, reset_num_timesteps=False)
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, model.n_steps)
    ours = model.rollout_buffer
    assert ours.episode_starts[1:].any(), "the test needs an episode start inside the rollout"
    stock = RecurrentRolloutBuffer(model.n_steps, model.observation_space, model.action_space,
                                   ours.hidden_state_shape, "cpu", model.gae_lambda, model.gamma, model.n_envs)
    for name in ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages",
                 "returns"):
        setattr(stock, name, getattr(ours, name).copy())
    for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"):
        setattr(stock, name, getattr(ours, name).numpy().copy())
    stock.full = True
    after_ours, _ = same_update_as_sb3_contrib(model, stock)
    for name, value in model.policy.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(after_ours[name], value), name
        else:
            torch.testing.assert_close(after_ours[name], value, rtol=1e-6, atol=1e-7, msg=name)


class _WithMask:
    """Our buffer as sb3-contrib's ``train`` reads it: the same minibatches, each with an all-true mask
    (ours carry ``mask=None``: nothing is padded; upstream's ``train`` indexes every term by a mask)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def get(self, batch_size):
        for data in self.buffer.get(batch_size):
            yield data._replace(mask=torch.ones_like(data.advantages))

    def __getattr__(self, name):
        return getattr(self.buffer, name)


@pytest.mark.parametrize("aux_loss_coef, ppo_kwargs", [
    (0.0, {}), (0.0, {"clip_range_vf": 0.1, "ent_coef": 0.01}), (1.0, {"n_epochs": 3, "target_kl": 1e-9})])
def test_update_equals_sb3_contrib_update_bit_for_bit(aux_loss_coef, ppo_kwargs):
    """Same rollout, same minibatches, same start: our ``train()`` and sb3-contrib's ``RecurrentPPO.train``
    leave every parameter and optimiser state bit-identical when the aux loss adds nothing
    (``aux_loss_coef=0``, or a layer with no aux terms), over several epochs and minibatches of Adam
    steps, with value clipping, an entropy bonus and KL early stopping."""
    gated = {"update_gate": "event", "target_update_rate": 0.5} if aux_loss_coef == 0 else {}
    env = make_vec_env("sparsernn/CartPoleNoVel-v1", n_envs=4, seed=0)
    model = SparseRecurrentPPO("SparseRecurrentPolicy", env, n_steps=16, batch_size=32, seed=0, device="cpu",
                               aux_loss_coef=aux_loss_coef, chunk_length=8, **{"n_epochs": 2, **ppo_kwargs},
                               policy_kwargs={"hidden_size": 8, "cell": "gru", "density_hh": 0.5, **gated})
    assert model.policy.aux_loss() is not None
    model.learn(64)  # a first update, so that Adam's moments are not zero
    model._setup_learn(64, reset_num_timesteps=False)
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer, model.n_steps)
    start = copy.deepcopy((model.policy.state_dict(), model.policy.optimizer.state_dict()))
    n_updates = model._n_updates

    def one_train(train):
        model.policy.load_state_dict(start[0])
        model.policy.optimizer.load_state_dict(copy.deepcopy(start[1]))  # Adam updates its state in place
        model._n_updates = n_updates
        torch.manual_seed(123)  # the minibatch order
        train()
        return (copy.deepcopy(model.policy.state_dict()), copy.deepcopy(model.policy.optimizer.state_dict()),
                model._n_updates - n_updates)

    ours = one_train(model.train)
    ours_buffer = model.rollout_buffer
    model.rollout_buffer = _WithMask(ours_buffer)
    stock = one_train(lambda: RecurrentPPO.train(model))
    model.rollout_buffer = ours_buffer
    assert ours[2] == stock[2] and ours[2] > 0, "different numbers of epochs"
    if "target_kl" in ppo_kwargs:
        assert ours[2] < ppo_kwargs["n_epochs"], "the test needs the KL early stop to happen"
    for name, value in stock[0].items():
        assert torch.equal(ours[0][name], value), f"parameter {name} differs from sb3-contrib's update"
    for index, state in stock[1]["state"].items():
        for key, value in state.items():
            assert torch.equal(ours[1]["state"][index][key], value), f"optimiser state {index}/{key} differs"
    assert any(not torch.equal(start[0][name], value) for name, value in ours[0].items()), "nothing was updated"
