"""CueMemoryEnv: layout, timing, reward, seeding, argument checks."""
import gymnasium as gym
import numpy as np
import pytest

from sparsernn.envs import CueMemoryEnv


def run_episode(env, policy, seed):
    """Play one episode; return (observations, rewards, terminated flags, infos)."""
    observation, info = env.reset(seed=seed)
    observations, rewards, terminals, infos = [observation], [], [], [info]
    while True:
        observation, reward, terminated, truncated, info = env.step(policy(observations))
        assert not truncated
        observations.append(observation)
        rewards.append(reward)
        terminals.append(terminated)
        infos.append(info)
        if terminated:
            return np.stack(observations), np.array(rewards), terminals, infos


def oracle(n_cues):
    """Remember the cue shown with the cue flag; answer it at every step."""
    def policy(observations):
        cue_steps = [o for o in observations if o[n_cues] == 1.0]
        return int(cue_steps[0][:n_cues].argmax())
    return policy


def test_observation_layout_and_episode_length_is_gap_plus_two():
    env = CueMemoryEnv(gap=7, n_cues=3)
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    assert env.action_space == gym.spaces.Discrete(3)
    observations, rewards, terminals, infos = run_episode(env, lambda _: 0, seed=4)
    cue = infos[-1]["cue"]
    assert len(rewards) == 7 + 2
    assert terminals == [False] * 8 + [True]
    expected = np.zeros((10, 5), dtype=np.float32)
    expected[0, cue] = 1.0
    expected[0, env.cue_flag_index] = 1.0
    expected[8, env.query_flag_index] = 1.0
    np.testing.assert_array_equal(observations, expected)
    assert observations.dtype == np.float32
    assert infos[0] == {"gap": 7}


def test_zero_gap_puts_the_query_right_after_the_cue():
    observations, rewards, _, _ = run_episode(CueMemoryEnv(gap=0, n_cues=2), lambda _: 0, 0)
    assert len(rewards) == 2
    assert observations[1, 3] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_reward_is_one_exactly_when_the_answer_equals_the_cue(seed):
    n_cues = 5
    cue = CueMemoryEnv(gap=4, n_cues=n_cues).reset(seed=seed)[0][:n_cues].argmax()
    for answer in range(n_cues):
        # Actions before the query are ignored: vary them, only the answer counts.
        before = (answer + 1) % n_cues
        env = CueMemoryEnv(gap=4, n_cues=n_cues)
        _, rewards, _, infos = run_episode(
            env, lambda obs, a=answer, b=before: a if obs[-1][env.query_flag_index] else b, seed
        )
        assert rewards[:-1].tolist() == [0.0] * 5
        assert rewards[-1] == (1.0 if answer == cue else 0.0)
        assert infos[-1] == {"cue": cue, "is_success": answer == cue}


@pytest.mark.parametrize("env_id", [
    "sparsernn/CueMemory-v0",
    "sparsernn/CueMemoryLong-v0",
    "sparsernn/CueMemoryRandomGap-v0",
    "sparsernn/CueMemoryNoisy-v0",
])
def test_an_oracle_that_remembers_the_cue_gets_full_reward(env_id):
    env = gym.make(env_id)
    n_cues = env.action_space.n
    for seed in range(5):
        _, rewards, _, infos = run_episode(env, oracle(n_cues), seed)
        assert rewards.sum() == 1.0
        assert len(rewards) == infos[0]["gap"] + 2


def test_the_long_preset_really_has_a_thousand_step_gap():
    env = gym.make("sparsernn/CueMemoryLong-v0")
    _, rewards, _, _ = run_episode(env, oracle(4), seed=0)
    assert len(rewards) == 1002


def test_a_random_policy_scores_one_over_n_cues():
    env = CueMemoryEnv(gap=2, n_cues=4)
    env.action_space.seed(0)
    returns = [run_episode(env, lambda _: env.action_space.sample(), seed)[1].sum()
               for seed in range(4000)]
    # 1/4 +- 4.4 standard errors (sqrt(0.25 * 0.75 / 4000) = 0.0068)
    assert np.mean(returns) == pytest.approx(0.25, abs=0.03)


def test_random_gap_stays_in_range_and_varies():
    env = CueMemoryEnv(gap=(3, 9), n_cues=2)
    gaps = []
    for seed in range(200):
        _, rewards, _, infos = run_episode(env, lambda _: 0, seed)
        gaps.append(infos[0]["gap"])
        assert len(rewards) == infos[0]["gap"] + 2
    assert set(gaps) == set(range(3, 10))


def test_noise_distractors_have_the_requested_std_and_stay_in_bounds():
    env = CueMemoryEnv(gap=3000, n_cues=4, noise=0.7)
    observations, _, _, _ = run_episode(env, lambda _: 0, seed=0)
    gap_steps = observations[1:3001]
    assert gap_steps[:, :4].std() == pytest.approx(0.7, rel=0.03)
    assert gap_steps[:, :4].mean() == pytest.approx(0.0, abs=0.03)
    np.testing.assert_array_equal(gap_steps[:, 4:], 0.0)
    np.testing.assert_array_equal(observations[3001], [0, 0, 0, 0, 0, 1])
    assert all(o in env.observation_space for o in observations)
    bound = np.float32(4 * 0.7)
    np.testing.assert_array_equal(env.observation_space.low, [-bound] * 4 + [0, 0])
    np.testing.assert_array_equal(env.observation_space.high, [bound] * 4 + [1, 1])


@pytest.mark.parametrize("kwargs", [{"gap": 20}, {"gap": (5, 30), "noise": 0.3}])
def test_same_seed_same_episode_other_seed_other_episode(kwargs):
    def episode(seed):
        return run_episode(CueMemoryEnv(n_cues=8, **kwargs), lambda _: 0, seed)[0]

    np.testing.assert_array_equal(episode(12), episode(12))
    cues = {int(episode(seed)[0].argmax()) for seed in range(10)}
    assert len(cues) > 1


def test_step_outside_an_episode_raises():
    env = CueMemoryEnv(gap=0, n_cues=2)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


@pytest.mark.parametrize("action", [2, -1, 0.5, "0"])
def test_invalid_action_raises(action):
    env = CueMemoryEnv(gap=3, n_cues=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an int in range\(0, 2\), got"):
        env.step(action)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"gap": -1}, ValueError, r"gap must be an int >= 0, got -1"),
        ({"gap": 2.5}, TypeError, r"gap must be an int, got 2\.5 of type float"),
        ({"gap": True}, TypeError, r"gap must be an int, got the bool True"),
        ({"gap": (9, 3)}, ValueError, r"low <= high, got \(9, 3\)"),
        ({"gap": (1, 2, 3)}, ValueError, r"\(low, high\) pair .* length 3"),
        ({"gap": (-1, 3)}, ValueError, r"gap\[0\] must be an int >= 0, got -1"),
        ({"n_cues": 1}, ValueError, r"n_cues must be an int >= 2, got 1"),
        ({"n_cues": "4"}, TypeError, r"n_cues must be an int, got '4' of type str"),
        ({"noise": -0.1}, ValueError, r"noise must be a finite number >= 0, got -0\.1"),
        ({"noise": float("nan")}, ValueError, r"noise must be a finite number >= 0, got nan"),
        ({"noise": "0.1"}, TypeError, r"noise must be a real number .* got '0\.1' of type str"),
        ({"render_mode": "human"}, ValueError,
         r"render_mode must be None or one of \['rgb_array'\], got 'human'"),
    ],
)
def test_bad_arguments_raise_naming_argument_and_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        CueMemoryEnv(**kwargs)


def test_numpy_integers_are_accepted():
    env = CueMemoryEnv(gap=np.int64(3), n_cues=np.int32(2), noise=np.float32(0.5))
    assert (env.gap_range, env.n_cues) == ((3, 3), 2)
    assert isinstance(env.n_cues, int)


def test_rgb_array_render_draws_one_grey_square_per_entry():
    env = CueMemoryEnv(gap=1, n_cues=3, render_mode="rgb_array")
    observation, _ = env.reset(seed=0)
    image = env.render()
    assert image.shape == (16, 16 * 5, 3)
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[5, ::16, 1], observation * 255)
    np.testing.assert_array_equal(image[:, 16 * 3 : 16 * 4], 255)  # cue flag cell
    env.step(0)
    env.step(0)  # the query
    np.testing.assert_array_equal(env.render()[0, ::16, 0], [0, 0, 0, 0, 255])
    assert CueMemoryEnv().render() is None
