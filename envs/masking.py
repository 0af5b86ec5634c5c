"""Observation masking: keep a chosen subset of a flat Box observation.

Hiding entries of a fully observed state (for instance the velocities of a
classic-control task) turns an MDP into a POMDP that a memory-less policy
cannot solve, so the agent must integrate information over time.

:func:`narrow_box` validates the indices and builds the narrowed space;
:class:`MaskObservation` is the reusable wrapper built on it, which users can
apply to any environment with a 1-D ``Box`` observation space.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["MaskObservation", "narrow_box"]


def _as_index(value: Any, position: int) -> int:
    """Return ``value`` as a Python int, or raise a TypeError naming it."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"keep_indices[{position}] must be an int, got the bool {value!r}."
        )
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"keep_indices[{position}] must be an int, "
            f"got {value!r} of type {type(value).__name__}."
        ) from None


def narrow_box(
    space: gym.Space[Any], keep_indices: Sequence[int]
) -> tuple[np.ndarray, spaces.Box]:
    """Validate ``keep_indices`` against ``space`` and build the narrowed Box.

    Parameters
    ----------
    space : gymnasium.spaces.Box
        A one-dimensional Box of shape (n_features,).
    keep_indices : sequence of int
        Distinct positions in ``range(n_features)`` to keep, in the order in
        which they appear in the narrowed observation.

    Returns
    -------
    index : numpy.ndarray of shape (n_kept,), dtype intp
        The validated indices, ready for ``observation[index]``.
    narrowed : gymnasium.spaces.Box of shape (n_kept,)
        ``Box(space.low[index], space.high[index], dtype=space.dtype)``.

    Raises
    ------
    TypeError
        If ``space`` is not a Box, or ``keep_indices`` is not a sequence of
        ints.
    ValueError
        If ``space`` is not one-dimensional, or ``keep_indices`` is empty,
        holds duplicates or holds an index outside ``range(n_features)``.
    """
    if not isinstance(space, spaces.Box):
        raise TypeError(
            "observation_space must be a gymnasium.spaces.Box to be masked, "
            f"got {type(space).__name__}: {space}."
        )
    if len(space.shape) != 1:
        raise ValueError(
            "observation_space must be one-dimensional (shape (n_features,)) "
            f"to be masked, got shape {space.shape}."
        )
    if isinstance(keep_indices, (str, bytes)) or not isinstance(
        keep_indices, (Sequence, np.ndarray)
    ):
        raise TypeError(
            "keep_indices must be a sequence of ints, "
            f"got {keep_indices!r} of type {type(keep_indices).__name__}."
        )
    indices = [_as_index(value, i) for i, value in enumerate(keep_indices)]
    n_features = space.shape[0]
    if not indices:
        raise ValueError(
            f"keep_indices must name at least one of the {n_features} "
            "observation entries, got an empty sequence."
        )
    outside = [i for i in indices if not 0 <= i < n_features]
    if outside:
        raise ValueError(
            f"keep_indices must lie in range(0, {n_features}) for an observation "
            f"of shape {space.shape}, got {indices} (out of range: {outside})."
        )
    if len(set(indices)) != len(indices):
        raise ValueError(
            f"keep_indices must not repeat an index, got {indices}."
        )
    index = np.asarray(indices, dtype=np.intp)
    narrowed = spaces.Box(
        low=space.low[index], high=space.high[index], dtype=space.dtype
    )
    return index, narrowed


class MaskObservation(
    gym.ObservationWrapper[np.ndarray, Any, np.ndarray],
    gym.utils.RecordConstructorArgs,
):
    """Keep only some entries of a flat Box observation.

    Parameters
    ----------
    env : gymnasium.Env
        Environment whose observation space is a Box of shape (n_features,).
    keep_indices : sequence of int
        Distinct positions in ``range(n_features)`` to keep, in output order.

    Attributes
    ----------
    keep_indices : tuple of int
        The kept positions, in output order.
    observation_space : gymnasium.spaces.Box of shape (len(keep_indices),)
        The wrapped space's ``low``, ``high`` restricted to ``keep_indices``,
        with the wrapped space's dtype.

    Raises
    ------
    TypeError
        If the wrapped observation space is not a Box, or ``keep_indices`` is
        not a sequence of ints.
    ValueError
        If the wrapped space is not one-dimensional, or ``keep_indices`` is
        empty, repeats an index or holds an index out of range.

    Examples
    --------
    Hide the velocities of CartPole (observation ``[x, x_dot, theta,
    theta_dot]``):

    >>> import gymnasium as gym
    >>> env = MaskObservation(gym.make("CartPole-v1"), keep_indices=(0, 2))
    >>> env.observation_space.shape
    (2,)
    """

    def __init__(self, env: gym.Env[np.ndarray, Any], keep_indices: Sequence[int]):
        index, narrowed = narrow_box(env.observation_space, keep_indices)
        kept = tuple(int(i) for i in index)
        gym.utils.RecordConstructorArgs.__init__(self, keep_indices=kept)
        gym.ObservationWrapper.__init__(self, env)
        self.keep_indices = kept
        self._index = index
        self.observation_space = narrowed

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Return the kept entries.

        Parameters
        ----------
        observation : numpy.ndarray of shape (n_features,)
            Observation of the wrapped environment.

        Returns
        -------
        numpy.ndarray of shape (len(keep_indices),)
            A new array ``observation[keep_indices]`` (same dtype).
        """
        return observation[self._index]
