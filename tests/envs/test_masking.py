"""MaskObservation and the velocity-masked control ids."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import DtypeObservation, ReshapeObservation

from sparsernn.envs import ENV_IDS, MaskObservation

pytestmark = pytest.mark.filterwarnings(
    "ignore:builtin type .* has no __module__ attribute:DeprecationWarning"
)

# id -> (full-state id, kept entries, full-state torque per unit of action)
MASKED = {
    "sparsernn/CartPoleNoVel-v1": ("CartPole-v1", (0, 2), None),
    "sparsernn/PendulumNoVel-v1": ("Pendulum-v1", (0, 1), 2.0),
    "sparsernn/MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", (0,), 1.0),
    "sparsernn/LunarLanderNoVel-v3": ("LunarLander-v3", (0, 1, 4, 6, 7), None),
}
MASKED_IDS = [env_id for env_id in MASKED if env_id in ENV_IDS]


def test_wrapper_narrows_the_space_and_keeps_the_given_order():
    base = gym.make("CartPole-v1")
    env = MaskObservation(base, keep_indices=[2, 0])
    assert env.keep_indices == (2, 0)
    space = env.observation_space
    assert space.shape == (2,)
    assert space.dtype == np.float32
    np.testing.assert_array_equal(space.low, base.observation_space.low[[2, 0]])
    np.testing.assert_array_equal(space.high, base.observation_space.high[[2, 0]])
    observation, _ = env.reset(seed=3)
    full, _ = base.reset(seed=3)
    np.testing.assert_array_equal(observation, full[[2, 0]])


def test_wrapper_masks_every_step_like_slicing_the_full_observation():
    full_env = gym.make("CartPole-v1")
    env = MaskObservation(gym.make("CartPole-v1"), keep_indices=(1, 3))
    full, _ = full_env.reset(seed=11)
    observation, _ = env.reset(seed=11)
    for action in [0, 1, 1, 0, 1, 0, 0, 1]:
        np.testing.assert_array_equal(observation, full[[1, 3]])
        full = full_env.step(action)[0]
        observation = env.step(action)[0]
    assert observation in env.observation_space


def test_wrapper_keeps_the_dtype_of_the_wrapped_space():
    env = MaskObservation(DtypeObservation(gym.make("CartPole-v1"), np.float64), (0,))
    assert env.observation_space.dtype == np.float64
    observation, _ = env.reset(seed=0)
    assert observation.dtype == np.float64


def test_wrapper_accepts_numpy_indices_and_records_them_in_the_spec():
    env = MaskObservation(gym.make("CartPole-v1"), np.array([0, 2]))
    assert env.keep_indices == (0, 2)
    assert env.spec.additional_wrappers[-1].kwargs == {"keep_indices": (0, 2)}
    remade = env.spec.make()
    assert remade.observation_space == env.observation_space


@pytest.mark.parametrize(
    ("keep_indices", "error", "message"),
    [
        ((), ValueError, r"keep_indices must name at least one .* got an empty"),
        ((0, 4), ValueError, r"keep_indices must lie in range\(0, 4\).*\[0, 4\]"),
        ((-1,), ValueError, r"keep_indices must lie in range\(0, 4\).*\[-1\]"),
        ((2, 2), ValueError, r"keep_indices must not repeat an index, got \[2, 2\]"),
        ((0, 1.0), TypeError, r"keep_indices\[1\] must be an int, got 1\.0 of type float"),
        ((True,), TypeError, r"keep_indices\[0\] must be an int, got the bool True"),
        (0, TypeError, r"keep_indices must be a sequence of ints, got 0 of type int"),
        ("02", TypeError, r"keep_indices must be a sequence of ints, got '02'"),
    ],
)
def test_wrapper_rejects_bad_keep_indices(keep_indices, error, message):
    with pytest.raises(error, match=message):
        MaskObservation(gym.make("CartPole-v1"), keep_indices)


def test_wrapper_rejects_spaces_it_cannot_mask():
    with pytest.raises(TypeError, match=r"must be a gymnasium.spaces.Box .* got Discrete"):
        MaskObservation(gym.make("FrozenLake-v1"), (0,))
    square = ReshapeObservation(gym.make("CartPole-v1"), (2, 2))
    with pytest.raises(ValueError, match=r"one-dimensional .* got shape \(2, 2\)"):
        MaskObservation(square, (0,))


@pytest.mark.parametrize("env_id", MASKED_IDS)
def test_masked_id_observes_the_kept_slice_of_the_full_state_task(env_id):
    full_state_id, keep, torque = MASKED[env_id]
    full_env, env = gym.make(full_state_id), gym.make(env_id)
    assert env.observation_space.shape == (len(keep),)
    np.testing.assert_array_equal(env.observation_space.low, full_env.observation_space.low[list(keep)])
    np.testing.assert_array_equal(env.observation_space.high, full_env.observation_space.high[list(keep)])
    assert env.unwrapped.observation_space == env.observation_space

    full, _ = full_env.reset(seed=5)
    observation, _ = env.reset(seed=5)
    env.action_space.seed(7)
    for _ in range(60):
        np.testing.assert_array_equal(observation, full[list(keep)])
        action = env.action_space.sample()
        full_action = action if torque is None else action * np.float32(torque)
        full, full_reward, full_terminated, full_truncated, _ = full_env.step(full_action)
        observation, reward, terminated, truncated, _ = env.step(action)
        assert reward == full_reward
        assert (terminated, truncated) == (full_terminated, full_truncated)
        if terminated or truncated:
            break
    np.testing.assert_array_equal(observation, full[list(keep)])


def test_pendulum_actions_are_normalised_to_unit_torque_range():
    env = gym.make("sparsernn/PendulumNoVel-v1")
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    env.reset(seed=0)
    env.step(np.array([0.5], dtype=np.float32))
    assert env.unwrapped.last_u == pytest.approx(1.0)


@pytest.mark.parametrize("env_id", MASKED_IDS)
def test_masked_id_is_seeded(env_id):
    def rollout(seed):
        env = gym.make(env_id)
        observations = [env.reset(seed=seed)[0]]
        env.action_space.seed(seed)
        for _ in range(20):
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(observation)
            if terminated or truncated:
                break
        env.close()
        return np.stack(observations)

    np.testing.assert_array_equal(rollout(1), rollout(1))
    assert not np.array_equal(rollout(1), rollout(2))
