"""LunarLander without velocities (partially observable control; needs box2d).

Kept apart from :mod:`sparsernn.envs.control` because importing Gymnasium's
LunarLander requires the optional ``box2d`` dependency
(``pip install "gymnasium[box2d]"``); the ``sparsernn/LunarLanderNoVel-v3`` id
is registered only when it is importable.
"""
from __future__ import annotations

from gymnasium.envs.box2d.lunar_lander import LunarLander

from .control import MaskedObservationMixin

__all__ = ["LunarLanderNoVelEnv"]


class LunarLanderNoVelEnv(MaskedObservationMixin, LunarLander):
    """LunarLander-v3 without the linear and angular velocity entries.

    Observation: array of shape (5,), float32,
    ``[x, y, angle, left_leg_contact, right_leg_contact]`` (entries 0, 1, 4,
    6 and 7 of LunarLander's ``[x, y, vx, vy, angle, angular_velocity,
    left_leg_contact, right_leg_contact]``). Actions, rewards, termination
    and constructor arguments (``continuous``, ``gravity``, wind, ...) are
    LunarLander's.
    """

    keep_indices = (0, 1, 4, 6, 7)
