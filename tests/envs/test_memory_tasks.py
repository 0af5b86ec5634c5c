"""RepeatPrevious, Counting and CopyRecall: rewards exactly as specified, oracles solve them, bad input raises."""
import gymnasium as gym
import numpy as np
import pytest

import sparsernn.envs  # noqa: F401
from sparsernn.envs import CopyRecallEnv, CountingEnv, RepeatPreviousEnv


@pytest.mark.parametrize("k", [1, 3])
def test_repeat_previous_oracle_gets_length_minus_k_and_guessing_gets_a_quarter(k):
    env = RepeatPreviousEnv(k=k, n_symbols=4, length=20)
    observation, _ = env.reset(seed=0)
    seen, total, done = [int(observation.argmax())], 0.0, False
    while not done:
        answer = seen[-1 - k] if len(seen) > k else 0
        observation, reward, done, truncated, info = env.step(answer)
        total += reward
        assert not truncated
        seen.append(int(observation.argmax()))
    assert total == 20 - k and info == {"correct": 20 - k, "is_success": True}
    rng, returns = np.random.default_rng(0), []
    for seed in range(200):
        env.reset(seed=seed)
        returns.append(sum(env.step(int(rng.integers(4)))[1] for _ in range(20)))
    assert abs(np.mean(returns) / (20 - k) - 0.25) < 0.03


def test_repeat_previous_rewards_only_the_symbol_k_steps_back():
    env = RepeatPreviousEnv(k=2, n_symbols=3, length=6)
    observation, _ = env.reset(seed=1)
    symbols = [int(observation.argmax())]
    rewards = []
    for t in range(6):
        wrong = (symbols[t - 2] + 1) % 3 if t >= 2 else 0
        observation, reward, *_ = env.step(wrong)
        rewards.append(reward)
        symbols.append(int(observation.argmax()))
    assert rewards == [0.0] * 6


def test_counting_oracle_always_succeeds_and_the_count_is_the_number_of_flags():
    env = CountingEnv(length=5, p=0.5)
    for seed in range(20):
        observation, _ = env.reset(seed=seed)
        flags, steps = [], 0
        while observation[1] == 0:
            flags.append(observation[0])
            observation, reward, done, _, _ = env.step(0)
            assert reward == 0.0 and not done
            steps += 1
        assert steps == 5
        _, reward, done, _, info = env.step(int(sum(flags)))
        assert (reward, done, info) == (1.0, True, {"count": int(sum(flags)), "is_success": True})


def test_counting_wrong_answer_scores_zero():
    env = CountingEnv(length=3)
    observation, _ = env.reset(seed=0)
    count = 0
    while observation[1] == 0:
        count += int(observation[0])
        observation, *_ = env.step(0)
    _, reward, done, _, info = env.step((count + 1) % 4)
    assert (reward, done, info["count"], info["is_success"]) == (0.0, True, count, False)


@pytest.mark.parametrize("env_id, kwargs", [("sparsernn/RepeatPrevious-v0", {}), ("sparsernn/Counting-v0", {}),
                                            ("sparsernn/CopyRecallLong-v0", {"gap": 7})])
def test_same_seed_same_episode(env_id, kwargs):
    def episode(seed):
        env = gym.make(env_id, **kwargs)
        observations = [env.reset(seed=seed)[0]]
        done = False
        while not done:
            observation, _, done, _, _ = env.step(0)
            observations.append(observation)
        return np.stack(observations)

    assert np.array_equal(episode(3), episode(3))
    assert not np.array_equal(episode(3), episode(4))


@pytest.mark.parametrize("cls", [RepeatPreviousEnv, CountingEnv, CopyRecallEnv])
def test_step_outside_an_episode_and_invalid_actions_raise(cls):
    env = cls()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(99)


@pytest.mark.parametrize("cls, kwargs, error, name", [
    (RepeatPreviousEnv, {"k": 0}, ValueError, "k"),
    (RepeatPreviousEnv, {"k": 1.5}, TypeError, "k"),
    (RepeatPreviousEnv, {"n_symbols": 1}, ValueError, "n_symbols"),
    (RepeatPreviousEnv, {"k": 4, "length": 4}, ValueError, "length"),
    (CountingEnv, {"length": 0}, ValueError, "length"),
    (CountingEnv, {"p": 1.0}, ValueError, "p"),
    (CountingEnv, {"p": "half"}, TypeError, "p"),
    (CountingEnv, {"render_mode": "human"}, ValueError, "render_mode"),
    (CopyRecallEnv, {"gap": -1}, ValueError, "gap"),
    (CopyRecallEnv, {"length": 0}, ValueError, "length"),
    (CopyRecallEnv, {"n_symbols": 1}, ValueError, "n_symbols"),
    (CopyRecallEnv, {"gap": 2.5}, TypeError, "gap"),
])
def test_bad_arguments_raise_naming_the_argument(cls, kwargs, error, name):
    with pytest.raises(error, match=f"^{name} must"):
        cls(**kwargs)


@pytest.mark.parametrize("cls, width", [(RepeatPreviousEnv, 4), (CountingEnv, 2), (CopyRecallEnv, 6)])
def test_rgb_array_render_draws_the_last_observation(cls, width):
    env = cls(render_mode="rgb_array")
    observation, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (16, 16 * width, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame[0, ::16, 0], (observation * 255).astype(np.uint8))
    assert cls().render() is None


def test_copy_recall_oracle_succeeds_and_the_episode_has_the_documented_layout():
    env = CopyRecallEnv(gap=5, length=3, n_symbols=4)
    observation, info = env.reset(seed=0)
    assert info == {} and env.episode_length == 11
    seen, rewards, observations, done = [], [], [observation], False
    while not done:
        t = len(rewards)
        if observation[4] == 1.0:  # write flag: remember the symbol
            seen.append(int(observation[:4].argmax()))
        answer = seen[t - 8] if t >= 8 else 0
        observation, reward, done, truncated, info = env.step(answer)
        rewards.append(reward)
        observations.append(observation)
        assert not truncated
    flags = np.stack(observations[:-1])[:, 4:]
    assert flags[:3, 0].tolist() == [1.0] * 3 and flags[3:8].sum() == 0 and flags[8:, 1].tolist() == [1.0] * 3
    assert np.stack(observations[3:8]).sum() == 0  # the silence is all zeros
    assert rewards == [0.0] * 8 + [1 / 3] * 3 and info == {"correct": 3, "is_success": True}


def test_copy_recall_scores_each_recall_step_against_its_own_symbol():
    env = CopyRecallEnv(gap=2, length=2, n_symbols=4)
    observation, _ = env.reset(seed=1)
    first = int(observation[:4].argmax())
    second = int(env.step(0)[0][:4].argmax())
    for _ in range(3):  # from t = 1 (the second symbol) through the gap
        assert env.step(first)[1] == 0.0  # answers before the recall are ignored
    _, reward_first, *_ = env.step(second)  # the wrong symbol for recall step 0 ...
    _, reward_second, done, _, info = env.step(second)  # ... the right one for step 1
    assert reward_first == (0.5 if first == second else 0.0) and reward_second == 0.5 and done
    assert info["correct"] == 1 + (first == second)


def test_copy_recall_guessing_succeeds_at_n_symbols_to_the_minus_length():
    env, rng, successes = CopyRecallEnv(gap=1, length=2, n_symbols=4), np.random.default_rng(0), []
    for seed in range(800):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, done, _, info = env.step(int(rng.integers(4)))
        successes.append(info["is_success"])
    assert abs(np.mean(successes) - 1 / 16) < 0.025
