"""Small memory tasks beside :class:`~sparsernn.envs.CueMemoryEnv`: repeat an earlier observation, count,
copy a short sequence back after a long silence.

All are a few scalars per step (a run of 100 k steps of the first two trains in about a minute), and all
are solvable exactly by a network that remembers the right thing (a random policy scores
``1 / n_symbols`` per answer and about ``1 / (length + 1)`` at the count).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .memory import RENDER_CELL_PIXELS, _check_int

__all__ = ["RepeatPreviousEnv", "CountingEnv", "CopyRecallEnv"]


def _check_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float in (0, 1) or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number in (0, 1), got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}.")
    return value


class _EpisodeEnv(gym.Env[np.ndarray, np.int64]):
    """Shared bookkeeping: ``step`` before ``reset`` or after the end raises, actions are checked, and
    ``render_mode="rgb_array"`` draws the last observation as :class:`~sparsernn.envs.CueMemoryEnv` does."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}
    _last_observation: np.ndarray

    def _set_render_mode(self, render_mode: str | None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}.")
        self.render_mode = render_mode
        self._last_observation = np.zeros(self.observation_space.shape, dtype=np.float32)

    def _shown(self, observation: np.ndarray) -> np.ndarray:
        self._last_observation = observation
        return observation

    def render(self) -> np.ndarray | None:
        """One grey square per observation entry (``render_mode="rgb_array"``), else None."""
        if self.render_mode is None:
            return None
        grey = np.clip(self._last_observation, 0.0, 1.0) * 255.0
        row = np.repeat(grey.astype(np.uint8), RENDER_CELL_PIXELS)
        return np.repeat(row[None, :, None], RENDER_CELL_PIXELS, axis=0).repeat(3, axis=2)

    def _reset_symbols(self, seed: int | None):
        """Reset for a task of ``length`` random symbols: draw them, start at step 0 with no correct
        answer, return ``(first observation, {})``."""
        gym.Env.reset(self, seed=seed)
        self._symbols = self.np_random.integers(self.n_symbols, size=self.length)
        self._t, self._correct = 0, 0
        return self._observation(), {}

    def _check_step(self, action: Any) -> None:
        if self._t is None:
            raise RuntimeError(f"{type(self).__name__}.step was called before reset() or after the episode "
                               "terminated; call reset() first.")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in range(0, {self.action_space.n}), got {action!r}.")


class RepeatPreviousEnv(_EpisodeEnv):
    """Name the symbol shown ``k`` steps ago, at every step.

    An episode shows ``length`` symbols ``s_0 .. s_{length-1}``, each a one-hot
    vector over ``n_symbols`` classes drawn uniformly. The action taken on
    observation ``t`` answers ``s_{t-k}``: reward 1.0 if equal (0.0 otherwise,
    and 0.0 for ``t < k``, where there is nothing to repeat). The episode
    terminates after ``length`` actions, so the best return is ``length - k``
    and a guessing policy gets ``(length - k) / n_symbols``.

    Parameters
    ----------
    k : int >= 1, default=1
        How many steps back the answer lies.
    n_symbols : int >= 2, default=4
        Number of symbol classes; also the number of actions.
    length : int > k, default=32
        Observations (and actions) per episode.
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: the last observation as a row of grey squares.

    Attributes
    ----------
    observation_space : Box of shape (n_symbols,), float32 in [0, 1]
    action_space : Discrete of n_symbols

    Notes
    -----
    The terminating ``step`` returns ``info = {"correct": c, "is_success": c == length - k}``.
    Symbols come from ``np_random``, so ``reset(seed=s)`` replays the same episode.
    """

    def __init__(self, k: int = 1, n_symbols: int = 4, length: int = 32, render_mode: str | None = None) -> None:
        self.k = _check_int("k", k, 1)
        self.n_symbols = _check_int("n_symbols", n_symbols, 2)
        self.length = _check_int("length", length, self.k + 1)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_symbols,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_symbols)
        self._set_render_mode(render_mode)
        self._symbols = np.zeros(self.length, dtype=np.int64)
        self._t: int | None = None
        self._correct = 0

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.n_symbols, dtype=np.float32)
        observation[self._symbols[self._t]] = 1.0
        return self._shown(observation)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the episode's symbols and return the first observation (``info`` is empty)."""
        return self._reset_symbols(seed)

    def step(self, action: Any):
        """Score ``action`` as the answer for ``s_{t-k}``, then show ``s_{t+1}`` (zeros after the last)."""
        self._check_step(action)
        t = self._t
        reward = 1.0 if t >= self.k and int(action) == self._symbols[t - self.k] else 0.0
        self._correct += int(reward)
        if t + 1 < self.length:
            self._t = t + 1
            return self._observation(), reward, False, False, {}
        self._t = None
        info = {"correct": self._correct, "is_success": self._correct == self.length - self.k}
        return self._shown(np.zeros(self.n_symbols, dtype=np.float32)), reward, True, False, info


class CountingEnv(_EpisodeEnv):
    """Count the flags of an episode and report the count when queried.

    Observations are ``[flag, query]``. For ``t = 0 .. length - 1`` the flag is
    1 with probability ``p`` (the query 0); at ``t = length`` the query flag is
    set (flag 0). The action taken on the query is the answer: reward 1.0 if it
    equals the number of flags shown, else 0.0, and the episode terminates.
    Earlier actions are ignored. An episode lasts ``length + 1`` steps.

    Parameters
    ----------
    length : int >= 1, default=4
        Flag steps before the query.
    p : float in (0, 1), default=0.5
        Probability of a flag at each flag step.
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: the last observation as a row of grey squares.

    Attributes
    ----------
    observation_space : Box of shape (2,), float32 in [0, 1]
    action_space : Discrete of length + 1
        The answer 0 .. length; ignored until the query.

    Notes
    -----
    The terminating ``step`` returns ``info = {"count": n, "is_success": answer == n}``.
    """

    def __init__(self, length: int = 4, p: float = 0.5, render_mode: str | None = None) -> None:
        self.length = _check_int("length", length, 1)
        self.p = _check_probability("p", p)
        self.observation_space = spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.length + 1)
        self._set_render_mode(render_mode)
        self._flags = np.zeros(self.length, dtype=bool)
        self._t: int | None = None

    def _observation(self) -> np.ndarray:
        observation = np.zeros(2, dtype=np.float32)
        if self._t < self.length:
            observation[0] = float(self._flags[self._t])
        else:
            observation[1] = 1.0
        return self._shown(observation)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the episode's flags and return the first flag step (``info`` is empty)."""
        super().reset(seed=seed)
        self._flags = self.np_random.random(self.length) < self.p
        self._t = 0
        return self._observation(), {}

    def step(self, action: Any):
        """Advance one step; only the action answering the query is scored."""
        self._check_step(action)
        if self._t < self.length:
            self._t += 1
            return self._observation(), 0.0, False, False, {}
        self._t = None
        count = int(self._flags.sum())
        correct = int(action) == count
        info = {"count": count, "is_success": correct}
        return self._shown(np.zeros(2, dtype=np.float32)), 1.0 if correct else 0.0, True, False, info


class CopyRecallEnv(_EpisodeEnv):
    """See a short sequence, wait through a long silence, then write the sequence back in order.

    Observations are ``[one-hot symbol (n_symbols), write flag, recall flag]``. An episode has
    ``2 * length + gap`` steps:

    - ``t = 0 .. length - 1``: the symbols ``s_0 .. s_{length-1}`` (drawn uniformly), write flag set;
    - the next ``gap`` steps: all zeros;
    - the last ``length`` steps: recall flag set (no symbol). The action taken on the ``j``-th recall
      step answers ``s_j``: reward ``1 / length`` if equal, else 0. The episode terminates after the
      last answer. Actions before the recall are ignored (reward 0).

    The best return is 1; a guessing policy gets ``1 / n_symbols`` in expectation and succeeds (all
    answers right) with probability ``n_symbols ** -length``.

    Parameters
    ----------
    gap : int >= 0, default=5000
        Silent steps between the last symbol and the first recall step.
    length : int >= 1, default=2
        Symbols to copy.
    n_symbols : int >= 2, default=4
        Symbol classes; also the number of actions.
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: the last observation as a row of grey squares.

    Attributes
    ----------
    observation_space : Box of shape (n_symbols + 2,), float32 in [0, 1]
    action_space : Discrete of n_symbols

    Notes
    -----
    The terminating ``step`` returns ``info = {"correct": c, "is_success": c == length}``.
    Symbols come from ``np_random``, so ``reset(seed=s)`` replays the same episode.
    """

    def __init__(self, gap: int = 5000, length: int = 2, n_symbols: int = 4, render_mode: str | None = None) -> None:
        self.gap = _check_int("gap", gap, 0)
        self.length = _check_int("length", length, 1)
        self.n_symbols = _check_int("n_symbols", n_symbols, 2)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_symbols + 2,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_symbols)
        self._set_render_mode(render_mode)
        self._symbols = np.zeros(self.length, dtype=np.int64)
        self._t: int | None = None
        self._correct = 0

    @property
    def episode_length(self) -> int:
        """Steps per episode: ``2 * length + gap``."""
        return 2 * self.length + self.gap

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.n_symbols + 2, dtype=np.float32)
        recall_start = self.length + self.gap
        if self._t < self.length:
            observation[self._symbols[self._t]] = 1.0
            observation[self.n_symbols] = 1.0
        elif self._t >= recall_start:
            observation[self.n_symbols + 1] = 1.0
        return self._shown(observation)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the episode's symbols and return the first observation (``info`` is empty)."""
        return self._reset_symbols(seed)

    def step(self, action: Any):
        """Score ``action`` if this is a recall step, then show the next observation."""
        self._check_step(action)
        t, recall_start = self._t, self.length + self.gap
        reward = 0.0
        if t >= recall_start and int(action) == self._symbols[t - recall_start]:
            reward = 1.0 / self.length
            self._correct += 1
        if t + 1 < self.episode_length:
            self._t = t + 1
            return self._observation(), reward, False, False, {}
        self._t = None
        info = {"correct": self._correct, "is_success": self._correct == self.length}
        return self._shown(np.zeros(self.n_symbols + 2, dtype=np.float32)), reward, True, False, info
