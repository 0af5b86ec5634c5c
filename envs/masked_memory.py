"""A memory task with invalid actions: remember a cue, wait through a gap, then pick it among a few allowed answers.

Made to test action masking with a recurrent policy (sb3-contrib's
``action_masks()`` convention): an invalid action ends the episode with no
reward, so a policy that does not know which actions are allowed almost never
reaches the question; one that acts under the masks always reaches it, and
then needs memory to do better than chance among the allowed answers.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .memory import _check_int
from .memory_tasks import _EpisodeEnv

__all__ = ["MaskedCueMemoryEnv"]


class MaskedCueMemoryEnv(_EpisodeEnv):
    """Remember a cue through a gap in which only "wait" is allowed, then name it among ``n_allowed`` answers.

    Actions: ``0 .. n_cues - 1`` answer a cue, ``n_cues`` is "wait". Timeline of
    an episode (``t`` counts the observations):

    - ``t = 0``: the cue, one-hot over ``n_cues`` channels, with the cue flag
      set. Allowed: wait.
    - ``t = 1 .. gap``: blank observations. Allowed: wait.
    - ``t = gap + 1``: the query flag. Allowed: the cue's answer and
      ``n_allowed - 1`` other answers drawn at reset; wait is not allowed.
      The answer ends the episode: reward 1.0 if it names the cue, else 0.0.

    An action that is not allowed ends the episode at once with reward 0.0
    (``info["invalid_action"] = True``). :meth:`action_masks` returns the
    allowed actions of the current step, the method sb3-contrib's
    ``get_action_masks`` calls.

    What a policy can reach: acting under the masks with no memory, success
    ``1 / n_allowed``; with memory, 1. Acting without the masks, a uniformly
    random policy survives the ``gap + 1`` waiting steps with probability
    ``(n_cues + 1) ** -(gap + 1)`` (6e-5 for the defaults), so it almost never
    sees a reward to learn from.

    Parameters
    ----------
    gap : int >= 0, default=5
        Blank steps between cue and query.
    n_cues : int >= 2, default=4
        Cue classes (answers).
    n_allowed : int in [1, n_cues], default=2
        Answers allowed at the query (the right one among them).
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: the last observation as a row of grey squares.

    Attributes
    ----------
    observation_space : Box of shape (n_cues + 2,), float32 in [0, 1]
        ``[cue_0 .. cue_{n_cues-1}, cue_flag, query_flag]``.
    action_space : Discrete of n_cues + 1
        ``n_cues`` is wait.

    Notes
    -----
    Episodes end with ``info = {"cue": c, "is_success": bool, "invalid_action": bool}``.
    Cue and allowed answers come from ``np_random``, so ``reset(seed=s)`` replays an episode.

    Examples
    --------
    >>> env = MaskedCueMemoryEnv(gap=1, n_cues=3, n_allowed=2)
    >>> obs, _ = env.reset(seed=0)
    >>> cue = int(obs[:3].argmax())
    >>> env.action_masks().tolist()  # only wait
    [False, False, False, True]
    >>> _ = env.step(3); _ = env.step(3)
    >>> int(env.action_masks().sum()), bool(env.action_masks()[cue])
    (2, True)
    >>> env.step(cue)[1:3]
    (1.0, True)
    """

    def __init__(self, gap: int = 5, n_cues: int = 4, n_allowed: int = 2, render_mode: str | None = None) -> None:
        self.gap = _check_int("gap", gap, 0)
        self.n_cues = _check_int("n_cues", n_cues, 2)
        self.n_allowed = _check_int("n_allowed", n_allowed, 1)
        if self.n_allowed > self.n_cues:
            raise ValueError(f"n_allowed must be at most n_cues={self.n_cues}, got {self.n_allowed}.")
        self.wait = self.n_cues
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_cues + 2,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_cues + 1)
        self._set_render_mode(render_mode)
        self._cue = 0
        self._allowed = np.zeros(self.n_cues + 1, dtype=bool)
        self._t: int | None = None

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.n_cues + 2, dtype=np.float32)
        if self._t == 0:
            observation[self._cue] = 1.0
            observation[self.n_cues] = 1.0
        elif self._t == self.gap + 1:
            observation[self.n_cues + 1] = 1.0
        return self._shown(observation)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the cue and the answers allowed at the query; return the cue observation (``info`` empty)."""
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        others = [c for c in range(self.n_cues) if c != self._cue]
        self._allowed = np.zeros(self.n_cues + 1, dtype=bool)
        self._allowed[self._cue] = True
        self._allowed[self.np_random.choice(others, self.n_allowed - 1, replace=False)] = True
        self._t = 0
        return self._observation(), {}

    def action_masks(self) -> np.ndarray:
        """The actions allowed now, bool of shape ``(n_cues + 1,)``: wait before the query, the drawn
        answers at it."""
        if self._t is None:
            raise RuntimeError("MaskedCueMemoryEnv.action_masks was called before reset() or after the episode "
                               "ended; call reset() first.")
        if self._t <= self.gap:
            masks = np.zeros(self.n_cues + 1, dtype=bool)
            masks[self.wait] = True
            return masks
        return self._allowed.copy()

    def step(self, action: Any):
        """Wait, or answer; an action :meth:`action_masks` does not allow ends the episode with reward 0."""
        self._check_step(action)
        action = int(action)
        if not self.action_masks()[action]:
            self._t = None
            info = {"cue": self._cue, "is_success": False, "invalid_action": True}
            return self._shown(np.zeros(self.n_cues + 2, dtype=np.float32)), 0.0, True, False, info
        if self._t <= self.gap:
            self._t += 1
            return self._observation(), 0.0, False, False, {}
        self._t = None
        correct = action == self._cue
        info = {"cue": self._cue, "is_success": correct, "invalid_action": False}
        return self._shown(np.zeros(self.n_cues + 2, dtype=np.float32)), float(correct), True, False, info
