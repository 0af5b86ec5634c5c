"""Every registered id passes Gymnasium's and Stable-Baselines3's checkers."""
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from sparsernn.envs import ENV_IDS

pytestmark = pytest.mark.filterwarnings(
    "ignore:builtin type .* has no __module__ attribute:DeprecationWarning"
)

# check_env on a gym.make'd env always notes that it is wrapped; that notice
# is about the caller, not the env, so it is the one warning tolerated.
WRAPPED_NOTICE = "different from the unwrapped version"


@pytest.fixture(autouse=True)
def headless_pygame(monkeypatch):
    """Let the render-mode checks draw without a display."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def run_recording_warnings(check, env):
    """Run ``check(env)`` and return the messages of all warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(env)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_checker_on_the_unwrapped_env_is_silent(env_id):
    # make first: importing Box2D while warnings are recorded would log its
    # own SWIG DeprecationWarnings, which are not this env's.
    env = gym.make(env_id).unwrapped
    assert run_recording_warnings(gym_check_env, env) == []
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_checker_on_the_made_env_is_silent(env_id):
    env = gym.make(env_id)
    messages = run_recording_warnings(gym_check_env, env)
    assert [m for m in messages if WRAPPED_NOTICE not in m] == []
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("unwrap", [False, True], ids=["made", "unwrapped"])
def test_sb3_checker_is_silent(env_id, unwrap):
    env = gym.make(env_id)
    env = env.unwrapped if unwrap else env
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sb3_check_env(env, warn=True)
    env.close()
