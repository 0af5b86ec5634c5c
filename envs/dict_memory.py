"""A cue-recall task with Dict observations: ``{"cue": Discrete, "position": Box}``.

The Dict-observation counterpart of :class:`~sparsernn.envs.CueMemoryEnv`,
made to test recurrent policies on Dict spaces (SB3's ``CombinedExtractor``
one-hot encodes the Discrete key and flattens the Box one).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .memory import RENDER_CELL_PIXELS, _check_int

__all__ = ["DictCueMemoryEnv"]


class DictCueMemoryEnv(gym.Env[dict, np.int64]):
    """Remember a cue shown at the start; name it when the position reaches 1.

    Observations are ``{"cue": c, "position": [t / (gap + 1)]}``: at ``t = 0``
    ``cue`` is the episode's cue (``0 .. n_cues - 1``), afterwards ``n_cues``
    ("nothing shown"); ``position`` runs from 0 to 1 over the episode. The
    action taken at position 1 (``t = gap + 1``) is the answer: reward 1.0 if it
    names the cue, else 0.0, and the episode terminates. Earlier actions are
    ignored. A policy without memory succeeds ``1 / n_cues`` of the time.

    Parameters
    ----------
    gap : int >= 0, default=3
        Steps between the cue and the question.
    n_cues : int >= 2, default=3
        Cue classes; also the number of actions.
    render_mode : {None, "rgb_array"}, default=None
        ``"rgb_array"``: the last observation as a row of grey squares (the cue one-hot over
        ``n_cues + 1`` entries, then the position), as :class:`~sparsernn.envs.CueMemoryEnv` draws.

    Attributes
    ----------
    observation_space : Dict
        ``{"cue": Discrete(n_cues + 1), "position": Box(0, 1, (1,), float32)}``.
    action_space : Discrete of n_cues

    Notes
    -----
    The terminating ``step`` returns ``info = {"cue": c, "is_success": bool}``. The cue comes from
    ``np_random``, so ``reset(seed=s)`` replays an episode.

    Examples
    --------
    >>> env = DictCueMemoryEnv(gap=1, n_cues=3)
    >>> obs, _ = env.reset(seed=0)
    >>> cue = int(obs["cue"])
    >>> obs, *_ = env.step(0); int(obs["cue"]), float(obs["position"][0])
    (3, 0.5)
    >>> obs, *_ = env.step(0); float(obs["position"][0])  # the question
    1.0
    >>> env.step(cue)[1:3]
    (1.0, True)
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, gap: int = 3, n_cues: int = 3, render_mode: str | None = None) -> None:
        self.gap = _check_int("gap", gap, 0)
        self.n_cues = _check_int("n_cues", n_cues, 2)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}.")
        self.render_mode = render_mode
        self.observation_space = spaces.Dict({"cue": spaces.Discrete(self.n_cues + 1),
                                              "position": spaces.Box(0.0, 1.0, (1,), dtype=np.float32)})
        self.action_space = spaces.Discrete(self.n_cues)
        self._cue = 0
        self._t: int | None = None
        self._last = {"cue": np.int64(self.n_cues), "position": np.zeros(1, dtype=np.float32)}

    def _observation(self) -> dict[str, Any]:
        cue = self._cue if self._t == 0 else self.n_cues
        self._last = {"cue": np.int64(cue), "position": np.array([self._t / (self.gap + 1)], dtype=np.float32)}
        return self._last

    def render(self) -> np.ndarray | None:
        """One grey square per entry of ``[one-hot cue (n_cues + 1), position]`` (``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        row = np.zeros(self.n_cues + 2, dtype=np.float32)
        row[int(self._last["cue"])] = 1.0
        row[-1] = self._last["position"][0]
        pixels = np.repeat((row * 255.0).astype(np.uint8), RENDER_CELL_PIXELS)
        return np.repeat(pixels[None, :, None], RENDER_CELL_PIXELS, axis=0).repeat(3, axis=2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the cue and show it (``info`` is empty)."""
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._t = 0
        return self._observation(), {}

    def step(self, action: Any):
        """Advance one step; only the action at position 1 is scored."""
        if self._t is None:
            raise RuntimeError("DictCueMemoryEnv.step was called before reset() or after the episode terminated; "
                               "call reset() first.")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in range(0, {self.n_cues}), got {action!r}.")
        if self._t <= self.gap:
            self._t += 1
            return self._observation(), 0.0, False, False, {}
        observation = {"cue": np.int64(self.n_cues), "position": np.ones(1, dtype=np.float32)}
        self._last = observation
        self._t = None
        correct = int(action) == self._cue
        return observation, float(correct), True, False, {"cue": self._cue, "is_success": correct}
