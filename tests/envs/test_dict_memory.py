"""DictCueMemoryEnv: the Dict observations, scoring, seeding, and the doc example."""
import doctest

import numpy as np
import pytest

from sparsernn.envs import DictCueMemoryEnv, dict_memory


def test_observations_rewards_and_seeding():
    env = DictCueMemoryEnv(gap=2, n_cues=4)
    cues = []
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        cue = int(obs["cue"])
        cues.append(cue)
        positions = [float(obs["position"][0])]
        for _ in range(3):
            obs, reward, terminated, _, _ = env.step((cue + 1) % 4)  # ignored before the question
            assert env.observation_space.contains(obs) and int(obs["cue"]) == 4
            assert (reward, terminated) == (0.0, False)
            positions.append(float(obs["position"][0]))
        assert positions == pytest.approx([0, 1 / 3, 2 / 3, 1])
        answer = cue if seed % 2 else (cue + 1) % 4
        _, reward, terminated, _, info = env.step(answer)
        assert (reward, terminated, info["is_success"]) == (float(seed % 2), True, bool(seed % 2))
    assert cues == [int(DictCueMemoryEnv(gap=2, n_cues=4).reset(seed=s)[0]["cue"]) for s in range(12)]
    assert len(set(cues)) > 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)


def test_render_draws_the_observation():
    env = DictCueMemoryEnv(gap=1, n_cues=3, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    image = env.render()
    assert image.shape == (16, 16 * 5, 3) and image.dtype == np.uint8
    assert image[0, 16 * int(obs["cue"]), 0] == 255 and image[0, -1, 0] == 0


def test_docstring_example():
    assert doctest.testmod(dict_memory, raise_on_error=True).attempted > 0
