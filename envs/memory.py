"""Long-gap memory task: recall a cue seen many steps earlier.

The copy/recall setup used to test long-range memory in recurrent networks:
a cue is shown once, followed by a long stretch of uninformative (optionally
noisy) observations, and the reward depends only on naming the cue when a
query flag appears. A network that updates its state at every step must carry
the cue through ``gap`` state transitions; a selective-update network can
keep it in closed neurons untouched. Everything is a few scalars per step,
so gaps of thousands of steps cost no more per step than short ones.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["CueMemoryEnv"]

# Side, in pixels, of the square that ``render`` draws per observation entry.
RENDER_CELL_PIXELS = 16

# Noise distractors are Gaussian clipped at this many standard deviations, so
# that the observation space stays bounded (clipping touches ~6e-5 of draws).
NOISE_CLIP_STD = 4.0


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int ``>= minimum`` or raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got the bool {value!r}.")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, got {value!r} of type {type(value).__name__}."
        ) from None
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.")
    return value


def _check_gap(gap: Any) -> tuple[int, int]:
    """Return ``gap`` as an inclusive ``(low, high)`` range of step counts."""
    if isinstance(gap, (tuple, list)):
        if len(gap) != 2:
            raise ValueError(
                "gap must be an int >= 0 or a (low, high) pair of ints with "
                f"0 <= low <= high, got a sequence of length {len(gap)}: {gap!r}."
            )
        low = _check_int("gap[0]", gap[0], 0)
        high = _check_int("gap[1]", gap[1], 0)
        if low > high:
            raise ValueError(
                f"gap must be a (low, high) pair with low <= high, got {gap!r}."
            )
        return low, high
    fixed = _check_int("gap", gap, 0)
    return fixed, fixed


def _check_noise(noise: Any) -> float:
    """Return ``noise`` as a finite float ``>= 0`` or raise."""
    if isinstance(noise, (bool, np.bool_)) or not isinstance(
        noise, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            "noise must be a real number (the distractor standard deviation), "
            f"got {noise!r} of type {type(noise).__name__}."
        )
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0.0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}.")
    return noise


class CueMemoryEnv(gym.Env[np.ndarray, np.int64]):
    """Remember a cue through a long gap, then name it when queried.

    Timeline of one episode (``t`` counts the observations; ``g`` is the gap
    length of this episode):

    - ``t = 0`` (returned by ``reset``): the cue, a one-hot vector over
      ``n_cues`` classes, with the cue flag set.
    - ``t = 1 .. g``: uninformative steps. The cue channels hold zeros, or
      i.i.d. Gaussian distractors of standard deviation ``noise`` (clipped at
      ``±4 * noise``); both flags are 0.
    - ``t = g + 1``: the query: cue channels zero, query flag set.
    - The action taken on the query observation is the answer: reward 1.0 if
      it equals the cue, else 0.0, and the episode terminates. The final
      observation is all zeros.

    Actions taken before the query are ignored (reward 0.0) but must still be
    valid. An episode therefore lasts exactly ``g + 2`` calls to ``step``;
    its return is 1 for a policy that remembers the cue and ``1 / n_cues`` in
    expectation for one that guesses.

    Parameters
    ----------
    gap : int or tuple of (int, int), default=50
        Number of uninformative steps between cue and query. A pair
        ``(low, high)`` draws the gap uniformly from ``low..high`` (inclusive)
        at every reset, so that counting steps does not reveal the query.
    n_cues : int, default=4
        Number of cue classes, ``>= 2``; also the number of actions.
    noise : float, default=0.0
        Standard deviation of the distractors on the cue channels during the
        gap; 0 gives all-zero gap observations.
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: ``render`` draws the last observation as a row of
        grey squares (one per entry, black 0 to white 1), an array of shape
        (16, 16 * (n_cues + 2), 3), uint8.

    Attributes
    ----------
    observation_space : gymnasium.spaces.Box of shape (n_cues + 2,), float32
        Layout ``[cue_0, ..., cue_{n_cues-1}, cue_flag, query_flag]``. The
        flags lie in [0, 1]; the cue channels in [0, 1] when ``noise == 0``,
        else in ``[-4 * noise, max(1, 4 * noise)]``.
    action_space : gymnasium.spaces.Discrete of n_cues
        The answer; ignored until the query.
    gap_range : tuple of (int, int)
        Inclusive range the gap is drawn from (``(gap, gap)`` when fixed).

    Notes
    -----
    ``reset`` returns ``info = {"gap": g}``; the terminating ``step`` returns
    ``info = {"cue": cue, "is_success": answer == cue}`` (Stable-Baselines3
    logs ``is_success`` as the success rate). Cue, gap and distractors all
    come from ``np_random``, so ``reset(seed=s)`` replays the same episode.

    Examples
    --------
    >>> env = CueMemoryEnv(gap=3, n_cues=2)
    >>> obs, info = env.reset(seed=0)
    >>> cue = int(obs[:2].argmax())
    >>> for _ in range(3 + 2):  # gap + 2 steps
    ...     obs, reward, terminated, truncated, info = env.step(cue)
    >>> reward, terminated
    (1.0, True)
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        gap: int | tuple[int, int] = 50,
        n_cues: int = 4,
        noise: float = 0.0,
        render_mode: str | None = None,
    ):
        self.gap_range = _check_gap(gap)
        self.n_cues = _check_int("n_cues", n_cues, 2)
        self.noise = _check_noise(noise)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                "render_mode must be None or one of "
                f"{self.metadata['render_modes']}, got {render_mode!r}."
            )
        self.render_mode = render_mode

        self._noise_bound = np.float32(NOISE_CLIP_STD * self.noise)
        low = np.zeros(self.n_cues + 2, dtype=np.float32)
        high = np.ones(self.n_cues + 2, dtype=np.float32)
        low[: self.n_cues] = -self._noise_bound
        high[: self.n_cues] = max(np.float32(1.0), self._noise_bound)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_cues)

        self._cue = 0
        self._gap = self.gap_range[0]
        self._t: int | None = None  # observations emitted; None: reset needed
        self._last_observation = np.zeros(self.n_cues + 2, dtype=np.float32)

    @property
    def cue_flag_index(self) -> int:
        """Position of the cue flag in the observation (``n_cues``)."""
        return self.n_cues

    @property
    def query_flag_index(self) -> int:
        """Position of the query flag in the observation (``n_cues + 1``)."""
        return self.n_cues + 1

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a cue (and a gap) and return the cue observation.

        Parameters
        ----------
        seed : int, optional
            Reseeds ``np_random``; the same seed gives the same episode.
        options : dict, optional
            Unused.

        Returns
        -------
        observation : numpy.ndarray of shape (n_cues + 2,), float32
            The one-hot cue with the cue flag set.
        info : dict
            ``{"gap": g}``, this episode's gap length.
        """
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        low, high = self.gap_range
        self._gap = low if low == high else int(self.np_random.integers(low, high + 1))
        self._t = 0
        observation = np.zeros(self.n_cues + 2, dtype=np.float32)
        observation[self._cue] = 1.0
        observation[self.cue_flag_index] = 1.0
        self._last_observation = observation
        return observation, {"gap": self._gap}

    def step(
        self, action: int | np.integer | np.ndarray
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step; only the action answering the query is scored.

        Parameters
        ----------
        action : int
            An element of ``action_space``.

        Returns
        -------
        observation : numpy.ndarray of shape (n_cues + 2,), float32
            A gap observation, the query, or zeros after the answer.
        reward : float
            1.0 for a correct answer, else 0.0.
        terminated : bool
            True after the answer.
        truncated : bool
            Always False.
        info : dict
            ``{"cue": cue, "is_success": bool}`` after the answer, else empty.

        Raises
        ------
        RuntimeError
            If called before ``reset`` or after the episode terminated.
        ValueError
            If ``action`` is not in ``action_space``.
        """
        if self._t is None:
            raise RuntimeError(
                "CueMemoryEnv.step was called before reset() or after the "
                "episode terminated; call reset() first."
            )
        if not self.action_space.contains(action):
            raise ValueError(
                f"action must be an int in range(0, {self.n_cues}), got {action!r}."
            )
        self._t += 1
        observation = np.zeros(self.n_cues + 2, dtype=np.float32)
        self._last_observation = observation
        if self._t <= self._gap:
            if self.noise > 0.0:
                distractors = self.np_random.normal(0.0, self.noise, self.n_cues)
                np.clip(
                    distractors, -self._noise_bound, self._noise_bound,
                    out=distractors,
                )
                observation[: self.n_cues] = distractors
            return observation, 0.0, False, False, {}
        if self._t == self._gap + 1:
            observation[self.query_flag_index] = 1.0
            return observation, 0.0, False, False, {}
        self._t = None
        correct = int(action) == self._cue
        info = {"cue": self._cue, "is_success": correct}
        return observation, 1.0 if correct else 0.0, True, False, info

    def render(self) -> np.ndarray | None:
        """Draw the last observation (``render_mode="rgb_array"``).

        Returns
        -------
        numpy.ndarray of shape (16, 16 * (n_cues + 2), 3), uint8, or None
            One grey square per observation entry, brightness
            ``clip(value, 0, 1)``; None when ``render_mode`` is None.
        """
        if self.render_mode is None:
            return None
        grey = np.clip(self._last_observation, 0.0, 1.0) * 255.0
        row = np.repeat(grey.astype(np.uint8), RENDER_CELL_PIXELS)
        return np.repeat(row[None, :, None], RENDER_CELL_PIXELS, axis=0).repeat(3, axis=2)
