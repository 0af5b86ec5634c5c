"""MaskedCueMemoryEnv: the masks, what an invalid action does, seeding, and the doc example."""
import doctest

import numpy as np
import pytest
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.env_util import make_vec_env

import sparsernn.envs  # noqa: F401
from sparsernn.envs import MaskedCueMemoryEnv, masked_memory


def play(env, answer, seed=0):
    """Wait through the gap, then answer ``answer(cue, masks)``; returns the last step's result."""
    obs, _ = env.reset(seed=seed)
    cue = int(obs[:env.n_cues].argmax())
    for _ in range(env.gap + 1):
        masks = env.action_masks()
        assert masks.tolist() == [False] * env.n_cues + [True]
        result = env.step(env.wait)
        assert result[1:3] == (0.0, False)
    return cue, env.action_masks(), env.step(answer(cue, env.action_masks()))


def test_the_query_allows_the_cue_and_n_allowed_minus_one_others():
    env = MaskedCueMemoryEnv(gap=3, n_cues=5, n_allowed=3)
    for seed in range(20):
        cue, masks, (obs, reward, terminated, _, info) = play(env, lambda cue, m: cue, seed)
        assert masks[cue] and not masks[env.wait] and masks.sum() == 3
        assert (reward, terminated, info["is_success"], info["invalid_action"]) == (1.0, True, True, False)


def test_an_allowed_wrong_answer_scores_zero_and_a_forbidden_action_ends_the_episode():
    env = MaskedCueMemoryEnv(gap=2)
    _, _, (_, reward, terminated, _, info) = play(env, lambda cue, m: int(np.flatnonzero(m & (np.arange(5) != cue))[0]))
    assert (reward, terminated, info["is_success"], info["invalid_action"]) == (0.0, True, False, False)
    env.reset(seed=1)
    env.step(env.wait)
    _, reward, terminated, _, info = env.step(0)  # an answer during the gap
    assert (reward, terminated, info["invalid_action"]) == (0.0, True, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.wait)
    with pytest.raises(RuntimeError, match="reset"):
        env.action_masks()
    _, masks, (_, reward, _, _, info) = play(env, lambda cue, m: env.wait)  # waiting at the query
    assert (reward, info["invalid_action"]) == (0.0, True)


def test_seeded_resets_replay_the_cue_and_the_allowed_answers():
    env = MaskedCueMemoryEnv(gap=1, n_cues=6, n_allowed=3)
    first = [play(env, lambda cue, m: cue, seed)[:2] for seed in range(5)]
    again = [play(env, lambda cue, m: cue, seed)[:2] for seed in range(5)]
    for (c1, m1), (c2, m2) in zip(first, again):
        assert c1 == c2 and np.array_equal(m1, m2)
    assert len({(c, tuple(m)) for c, m in first}) > 1


@pytest.mark.parametrize("kwargs, match", [({"n_allowed": 5}, "n_allowed"), ({"n_allowed": 0}, "n_allowed"),
                                           ({"gap": -1}, "gap"), ({"n_cues": 1}, "n_cues")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskedCueMemoryEnv(**kwargs)


def test_registered_id_exposes_masks_to_sb3_contrib():
    venv = make_vec_env("sparsernn/MaskedCueMemory-v0", n_envs=2, seed=0)
    venv.reset()
    assert is_masking_supported(venv)
    assert get_action_masks(venv).tolist() == [[False] * 4 + [True]] * 2


def test_docstring_example():
    assert doctest.testmod(masked_memory, raise_on_error=True).attempted > 0
