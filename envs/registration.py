"""Registration of the ``sparsernn/`` Gymnasium ids.

:func:`register_envs` runs when :mod:`sparsernn.envs` is imported, so both
``import sparsernn.envs; gym.make("sparsernn/CueMemory-v0")`` and
``gym.make("sparsernn.envs:sparsernn/CueMemory-v0")`` work. Entry points are
strings, so no environment module (nor box2d) is imported until an id is made.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym

__all__ = ["register_envs"]

# Velocity-masked control: (id, entry point, the full-state id it masks).
# max_episode_steps and reward_threshold are copied from the full-state id.
_MASKED_CONTROL: tuple[tuple[str, str, str], ...] = (
    ("sparsernn/CartPoleNoVel-v1", "sparsernn.envs.control:CartPoleNoVelEnv", "CartPole-v1"),
    ("sparsernn/PendulumNoVel-v1", "sparsernn.envs.control:PendulumNoVelEnv", "Pendulum-v1"),
    (
        "sparsernn/MountainCarContinuousNoVel-v0",
        "sparsernn.envs.control:MountainCarContinuousNoVelEnv",
        "MountainCarContinuous-v0",
    ),
)
_MASKED_BOX2D: tuple[tuple[str, str, str], ...] = (
    (
        "sparsernn/LunarLanderNoVel-v3",
        "sparsernn.envs.lunar_lander:LunarLanderNoVelEnv",
        "LunarLander-v3",
    ),
)

# Long-gap memory presets: (id, CueMemoryEnv keyword arguments).
_MEMORY_ENTRY_POINT = "sparsernn.envs.memory:CueMemoryEnv"
_MEMORY_PRESETS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sparsernn/CueMemory-v0", {"gap": 50, "n_cues": 4}),
    ("sparsernn/CueMemoryLong-v0", {"gap": 1000, "n_cues": 4}),
    # The query arrives after 25..75 steps, so counting steps does not help.
    ("sparsernn/CueMemoryRandomGap-v0", {"gap": (25, 75), "n_cues": 4}),
    # Gaussian distractors on the cue channels during the gap.
    ("sparsernn/CueMemoryNoisy-v0", {"gap": 50, "n_cues": 4, "noise": 0.5}),
    # Recall after distractors at a size a dense GRU learns in 100 k steps (issue 12's memory tasks).
    ("sparsernn/CueMemoryNoisyShort-v0", {"gap": 4, "n_cues": 4, "noise": 0.5}),
)

# Further small memory tasks (envs/memory_tasks.py): (id, entry point, keyword arguments).
_MEMORY_TASKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("sparsernn/RepeatPrevious-v0", "sparsernn.envs.memory_tasks:RepeatPreviousEnv", {"k": 1}),
    ("sparsernn/Counting-v0", "sparsernn.envs.memory_tasks:CountingEnv", {"length": 4}),
    # Copy two symbols back after 5000 silent steps (issue 13: memory across thousands of steps).
    ("sparsernn/CopyRecallLong-v0", "sparsernn.envs.memory_tasks:CopyRecallEnv", {"gap": 5000, "length": 2}),
    # Invalid actions end the episode; action_masks() says which are allowed (issue 16: masking with memory).
    ("sparsernn/MaskedCueMemory-v0", "sparsernn.envs.masked_memory:MaskedCueMemoryEnv",
     {"gap": 5, "n_cues": 4, "n_allowed": 2}),
    # Dict observations {"cue": Discrete, "position": Box} (issue 16: Dict spaces on the fast path).
    ("sparsernn/DictCueMemory-v0", "sparsernn.envs.dict_memory:DictCueMemoryEnv", {"gap": 3, "n_cues": 3}),
)


def _box2d_available() -> bool:
    """Whether the optional Box2D physics engine can be imported."""
    return importlib.util.find_spec("Box2D") is not None


def register_envs() -> tuple[str, ...]:
    """Register this package's environments with Gymnasium.

    Idempotent: an id already in ``gymnasium.registry`` is left as it is, so
    calling this again (or re-importing the package) neither warns nor fails.
    ``sparsernn/LunarLanderNoVel-v3`` is registered only when box2d is
    importable.

    Returns
    -------
    tuple of str
        The ids this package provides in the current installation, all of
        them present in ``gymnasium.registry`` on return.
    """
    masked = _MASKED_CONTROL + (_MASKED_BOX2D if _box2d_available() else ())
    ids: list[str] = []
    for env_id, entry_point, full_state_id in masked:
        if env_id not in gym.registry:
            full_state = gym.spec(full_state_id)
            gym.register(
                id=env_id,
                entry_point=entry_point,
                max_episode_steps=full_state.max_episode_steps,
                reward_threshold=full_state.reward_threshold,
            )
        ids.append(env_id)
    for env_id, kwargs in _MEMORY_PRESETS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=_MEMORY_ENTRY_POINT, kwargs=kwargs)
        ids.append(env_id)
    for env_id, entry_point, kwargs in _MEMORY_TASKS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)
        ids.append(env_id)
    return tuple(ids)
