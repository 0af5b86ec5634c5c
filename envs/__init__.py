"""Gymnasium environments and wrappers for sparse and selective-update RNNs.

Importing this package registers the ``sparsernn/`` ids (see
:data:`ENV_IDS`):

- velocity-masked, partially observable control —
  ``sparsernn/CartPoleNoVel-v1``, ``sparsernn/PendulumNoVel-v1``,
  ``sparsernn/MountainCarContinuousNoVel-v0`` and, when box2d is installed,
  ``sparsernn/LunarLanderNoVel-v3``;
- long-gap memory tasks (:class:`CueMemoryEnv`) —
  ``sparsernn/CueMemory-v0`` (gap 50), ``sparsernn/CueMemoryLong-v0``
  (gap 1000), ``sparsernn/CueMemoryRandomGap-v0`` (gap 25..75) and
  ``sparsernn/CueMemoryNoisy-v0`` (gap 50, distractor std 0.5),
  ``sparsernn/CueMemoryNoisyShort-v0`` (gap 4, distractor std 0.5);
- small memory tasks (``envs/memory_tasks.py``) — ``sparsernn/RepeatPrevious-v0``
  (:class:`RepeatPreviousEnv`: name the symbol of the previous step) and
  ``sparsernn/Counting-v0`` (:class:`CountingEnv`: report how many flags were shown),
  ``sparsernn/CopyRecallLong-v0`` (:class:`CopyRecallEnv`: write two symbols back after 5000 silent steps);
- action masking with memory — ``sparsernn/MaskedCueMemory-v0`` (:class:`MaskedCueMemoryEnv`: remember a
  cue, wait, name it among two allowed answers; invalid actions end the episode; ``action_masks()``);
- Dict observations — ``sparsernn/DictCueMemory-v0`` (:class:`DictCueMemoryEnv`: cue recall observed as
  ``{"cue": Discrete, "position": Box}``).

:class:`MaskObservation` hides entries of any flat Box observation.
"""
from .dict_memory import DictCueMemoryEnv
from .masked_memory import MaskedCueMemoryEnv
from .masking import MaskObservation
from .memory import CueMemoryEnv
from .memory_tasks import CopyRecallEnv, CountingEnv, RepeatPreviousEnv
from .registration import register_envs

ENV_IDS: tuple[str, ...] = register_envs()
"""The ids registered by this package in the current installation."""

__all__ = ["ENV_IDS", "CopyRecallEnv", "CueMemoryEnv", "CountingEnv", "DictCueMemoryEnv", "MaskObservation",
           "MaskedCueMemoryEnv", "RepeatPreviousEnv", "register_envs"]
