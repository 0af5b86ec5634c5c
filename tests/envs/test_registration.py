"""Registration of the sparsernn/ ids: contents, idempotence, make syntax."""
import importlib.util
import warnings

import gymnasium as gym
import pytest

import sparsernn.envs
from sparsernn.envs import ENV_IDS, register_envs

HAS_BOX2D = importlib.util.find_spec("Box2D") is not None

# id -> (full-state id whose time limit is kept, expected max_episode_steps)
MASKED = {
    "sparsernn/CartPoleNoVel-v1": ("CartPole-v1", 500),
    "sparsernn/PendulumNoVel-v1": ("Pendulum-v1", 200),
    "sparsernn/MountainCarContinuousNoVel-v0": ("MountainCarContinuous-v0", 999),
    "sparsernn/LunarLanderNoVel-v3": ("LunarLander-v3", 1000),
}
MEMORY = (
    "sparsernn/CueMemory-v0",
    "sparsernn/CueMemoryLong-v0",
    "sparsernn/CueMemoryRandomGap-v0",
    "sparsernn/CueMemoryNoisy-v0",
    "sparsernn/CueMemoryNoisyShort-v0",
    "sparsernn/RepeatPrevious-v0",
    "sparsernn/Counting-v0",
    "sparsernn/CopyRecallLong-v0",
    "sparsernn/MaskedCueMemory-v0",
    "sparsernn/DictCueMemory-v0",
)


def test_public_api_is_exactly_the_documented_names():
    assert sorted(sparsernn.envs.__all__) == [
        "CopyRecallEnv", "CountingEnv", "CueMemoryEnv", "DictCueMemoryEnv", "ENV_IDS", "MaskObservation",
        "MaskedCueMemoryEnv", "RepeatPreviousEnv", "register_envs",
    ]


def test_env_ids_lists_every_id_and_all_are_registered():
    expected = set(MEMORY) | {
        env_id for env_id in MASKED if HAS_BOX2D or "LunarLander" not in env_id
    }
    assert isinstance(ENV_IDS, tuple)
    assert set(ENV_IDS) == expected
    assert len(ENV_IDS) == len(expected)
    for env_id in ENV_IDS:
        assert env_id.startswith("sparsernn/")
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", sorted(set(MASKED) & set(ENV_IDS)))
def test_masked_ids_keep_the_time_limit_of_the_full_state_task(env_id):
    full_state_id, steps = MASKED[env_id]
    assert gym.spec(env_id).max_episode_steps == steps
    assert gym.spec(full_state_id).max_episode_steps == steps
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == steps
    env.close()


def test_register_envs_twice_is_silent_and_returns_the_same_ids():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert register_envs() == ENV_IDS
        assert register_envs() == ENV_IDS


def test_register_envs_restores_a_missing_id(monkeypatch):
    monkeypatch.delitem(gym.registry, "sparsernn/CueMemory-v0")
    assert "sparsernn/CueMemory-v0" not in gym.registry
    register_envs()
    assert gym.spec("sparsernn/CueMemory-v0").kwargs["gap"] == 50


def test_module_colon_id_syntax_makes_the_env():
    env = gym.make("sparsernn.envs:sparsernn/CartPoleNoVel-v1")
    observation, _ = env.reset(seed=0)
    assert observation.shape == (2,)
    env.close()


def test_make_forwards_keyword_arguments_to_the_memory_env():
    env = gym.make("sparsernn/CueMemory-v0", gap=3, n_cues=2)
    assert env.unwrapped.gap_range == (3, 3)
    assert env.action_space == gym.spaces.Discrete(2)
    env.close()
