"""Velocity-masked classic-control tasks (partially observable control).

Each class here is the Gymnasium classic-control environment with the
velocity entries removed from its observation. The masking is built into the
environment class (with the same :func:`~sparsernn.envs.masking.narrow_box`
that :class:`~sparsernn.envs.masking.MaskObservation` uses) rather than
applied as an outer wrapper, so that ``env.unwrapped`` *is* the partially
observable task: environment checkers, ``env.unwrapped.observation_space`` and
vectorised copies all see the masked observation.

These classes are the entry points of the ``sparsernn/*NoVel-*`` ids; make
them with :func:`gymnasium.make` so that the ``TimeLimit`` of the original
task is applied.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.continuous_mountain_car import (
    Continuous_MountainCarEnv,
)
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from .masking import narrow_box

__all__ = [
    "CartPoleNoVelEnv",
    "MaskedObservationMixin",
    "MountainCarContinuousNoVelEnv",
    "PendulumNoVelEnv",
]


class MaskedObservationMixin:
    """Mixin that narrows a flat Box observation to ``keep_indices``.

    Put it first among the bases, before the full-state environment class;
    a subclass only sets ``keep_indices``. Constructor arguments are passed
    through unchanged to the environment class.

    Attributes
    ----------
    keep_indices : tuple of int
        Class attribute: positions of the full observation to keep.
    observation_space : gymnasium.spaces.Box of shape (len(keep_indices),)
        The full space restricted to ``keep_indices``.
    """

    keep_indices: ClassVar[tuple[int, ...]] = ()
    # True while the full-state reset runs: some resets call ``self.step``
    # (LunarLander's does), whose observation the reset then masks itself.
    _inside_reset: bool = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._keep, self.observation_space = narrow_box(
            self.observation_space, self.keep_indices
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the full-state task and return the masked observation."""
        self._inside_reset = True
        try:
            observation, info = super().reset(seed=seed, options=options)
        finally:
            self._inside_reset = False
        return observation[self._keep], info

    def step(
        self, action: Any
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the full-state task and return the masked observation."""
        observation, reward, terminated, truncated, info = super().step(action)
        if self._inside_reset:
            return observation, reward, terminated, truncated, info
        return observation[self._keep], reward, terminated, truncated, info


class CartPoleNoVelEnv(MaskedObservationMixin, CartPoleEnv):
    """CartPole observing only the cart position and the pole angle.

    Observation: array of shape (2,), float32, ``[x, theta]`` (entries 0 and
    2 of CartPole's ``[x, x_dot, theta, theta_dot]``). Actions, rewards,
    termination and constructor arguments are CartPole's.
    """

    keep_indices = (0, 2)


class PendulumNoVelEnv(MaskedObservationMixin, PendulumEnv):
    """Pendulum observing ``cos`` and ``sin`` of the angle, not its velocity.

    Observation: array of shape (2,), float32, ``[cos(theta), sin(theta)]``
    (entries 0 and 1 of Pendulum's ``[cos, sin, theta_dot]``).

    Action: array of shape (1,), float32, in ``[-1, 1]``: the torque divided
    by ``max_torque`` (2.0). This is the only departure from Pendulum-v1,
    whose ``[-2, 2]`` torque box both Gymnasium's and Stable-Baselines3's
    environment checkers flag as unnormalised; rewards are Pendulum's,
    computed on the applied (rescaled, clipped) torque.
    """

    keep_indices = (0, 1)

    def __init__(self, render_mode: str | None = None, g: float = 10.0):
        super().__init__(render_mode=render_mode, g=g)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def step(
        self, action: Any
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply torque ``action * max_torque``; see the class docstring."""
        return super().step(np.asarray(action, dtype=np.float32) * self.max_torque)


class MountainCarContinuousNoVelEnv(MaskedObservationMixin, Continuous_MountainCarEnv):
    """Continuous MountainCar observing only the car's position.

    Observation: array of shape (1,), float32, ``[position]`` (entry 0 of
    ``[position, velocity]``). Actions, rewards, termination and constructor
    arguments are MountainCarContinuous's.
    """

    keep_indices = (0,)
