"""``SequenceRolloutBuffer``: a recurrent rollout buffer that never pads.

sb3-contrib's :class:`~sb3_contrib.common.recurrent.buffers.RecurrentRolloutBuffer`
cuts each minibatch into per-episode sequences and pads them, one tensor per
sequence, so each minibatch costs a Python loop over episodes and a padded
recurrent pass. Here the rollout stays as ``(n_steps, n_envs)`` columns: a
minibatch is a set of whole fixed-length chunks of env columns (by default
the whole column, ``chunk_length = n_steps``), episode starts stay inside the
chunks, and the state entering each chunk is the one recorded during the
rollout. The policy runs each minibatch through its core in one call of shape
``(chunk_length, n_chunks)``. Samples carry ``mask=None``: there is no padding.
Dict observations are stored as SB3's ``DictRolloutBuffer`` stores them, one
array per key, and chunked key by key.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RecurrentRolloutBufferSamples, RNNStates

from sparsernn.policies.maskable import action_mask_dims


class SequenceRolloutBuffer(RecurrentRolloutBuffer):
    """Rollout buffer that yields minibatches of whole, unpadded sequence chunks.

    Parameters
    ----------
    buffer_size : int
        ``n_steps``, the rollout length per environment.
    observation_space, action_space : gymnasium.spaces.Space
        A ``spaces.Dict`` observation space is stored one array per key.
    hidden_state_shape : tuple of int
        ``(n_steps, num_layers, n_envs, state_width)``, as sb3-contrib builds it.
    device : torch.device or str
    gae_lambda, gamma : float
    n_envs : int
    chunk_length : int, optional
        Steps per sequence chunk; must divide ``buffer_size``. Default: the
        whole rollout column.
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 hidden_state_shape: tuple[int, int, int, int], device: th.device | str = "auto",
                 gae_lambda: float = 1, gamma: float = 0.99, n_envs: int = 1,
                 chunk_length: int | None = None) -> None:
        # Whose reset and add store the transitions: SB3's plain or dict rollout buffer (the
        # observation arrays differ, nothing else does).
        self._storage = DictRolloutBuffer if isinstance(observation_space, spaces.Dict) else RolloutBuffer
        chunk_length = buffer_size if chunk_length is None else chunk_length
        if isinstance(chunk_length, bool) or not isinstance(chunk_length, int) or chunk_length < 1 \
                or buffer_size % chunk_length:
            raise ValueError(f"chunk_length must be a positive int dividing n_steps={buffer_size}; "
                             f"got chunk_length={chunk_length!r}")
        self.chunk_length = chunk_length
        self._chunks: dict[str, th.Tensor] | None = None
        super().__init__(buffer_size, observation_space, action_space, hidden_state_shape, device,
                         gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        self._storage.reset(self)
        # States stay torch tensors on the policy's device: one copy per step, no numpy round trip.
        shape = self.hidden_state_shape
        self.hidden_states_pi, self.cell_states_pi, self.hidden_states_vf, self.cell_states_vf = (
            th.zeros(shape, device=self.device) for _ in range(4))
        self._chunks = None

    def add(self, *args, lstm_states: RNNStates, **kwargs) -> None:
        """Record the states entering this step, then the transition (as SB3's ``RolloutBuffer.add``)."""
        self.hidden_states_pi[self.pos].copy_(lstm_states.pi[0])
        self.cell_states_pi[self.pos].copy_(lstm_states.pi[1])
        self.hidden_states_vf[self.pos].copy_(lstm_states.vf[0])
        self.cell_states_vf[self.pos].copy_(lstm_states.vf[1])
        self._storage.add(self, *args, **kwargs)

    #: Per-step fields kept as ``(n_steps, n_envs, ...)`` arrays and cut into chunks.
    _step_fields: tuple[str, ...] = ("observations", "actions", "values", "log_probs", "advantages", "returns",
                                     "episode_starts")

    def _chunked(self, array: np.ndarray | th.Tensor | dict[str, np.ndarray]) -> th.Tensor | dict[str, th.Tensor]:
        """``(n_steps, n_envs, ...)`` -> ``(n_chunks, chunk_length, ...)``, chunk-major (a dict key by key)."""
        if isinstance(array, dict):
            return {key: self._chunked(value) for key, value in array.items()}
        n_steps, n_envs, length = self.buffer_size, self.n_envs, self.chunk_length
        per_column = n_steps // length
        tensor = self.to_torch(array) if isinstance(array, np.ndarray) else array
        tail = tensor.shape[2:]
        # (n_steps, n_envs, ...) -> (per_column, length, n_envs, ...) -> (per_column, n_envs, length, ...)
        tensor = tensor.reshape(per_column, length, n_envs, *tail).transpose(1, 2)
        return tensor.reshape(per_column * n_envs, length, *tail)

    def _build_chunks(self) -> dict[str, th.Tensor]:
        """All fields as tensors of shape ``(n_chunks, chunk_length, ...)``, chunk-major."""
        n_steps, n_envs, length = self.buffer_size, self.n_envs, self.chunk_length
        per_column = n_steps // length

        def chunk_starts(states: th.Tensor) -> th.Tensor:
            # (n_steps, layers, n_envs, dim) at each chunk's first step -> (n_chunks, layers, dim)
            first = states[::length]
            return first.transpose(1, 2).reshape(per_column * n_envs, *first.shape[1:2], first.shape[3])

        chunks = {name: self._chunked(getattr(self, name)) for name in self._step_fields}
        for name in ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"):
            chunks[name] = chunk_starts(getattr(self, name))
        return chunks

    def get(self, batch_size: int | None = None) -> Generator[RecurrentRolloutBufferSamples, None, None]:
        """Yield minibatches of ``batch_size // chunk_length`` whole chunks, in random order.

        ``batch_size`` must be a multiple of ``chunk_length`` (default: the whole rollout).
        """
        if not self.full:
            raise RuntimeError(f"the rollout buffer must be full before sampling; it holds {self.pos} of "
                               f"{self.buffer_size} steps")
        total = self.buffer_size * self.n_envs
        batch_size = total if batch_size is None else batch_size
        if batch_size % self.chunk_length or not 0 < batch_size <= total:
            raise ValueError(f"batch_size must be a multiple of chunk_length={self.chunk_length} and at most "
                             f"n_steps * n_envs = {total}; got batch_size={batch_size}")
        if self._chunks is None:
            self._chunks = self._build_chunks()
        n_chunks = total // self.chunk_length
        per_batch = batch_size // self.chunk_length
        order = th.randperm(n_chunks, device=self.device) if per_batch < n_chunks else None
        for start in range(0, n_chunks, per_batch):
            yield self._chunk_samples(None if order is None else order[start:start + per_batch])

    def _chunk_samples(self, index: th.Tensor | None) -> RecurrentRolloutBufferSamples:
        data = self._chunks
        if index is not None:
            data = {name: ({key: value[index] for key, value in tensor.items()} if isinstance(tensor, dict)
                           else tensor[index]) for name, tensor in data.items()}
        return self._samples(data)

    def _samples(self, data: dict[str, th.Tensor]) -> RecurrentRolloutBufferSamples:
        """The minibatch of the chunks in ``data`` (``(n_seq, chunk_length, ...)`` per field)."""

        def flat(tensor: th.Tensor) -> th.Tensor:  # (n_seq, length, ...) -> (n_seq * length, ...)
            return tensor.reshape(-1, *tensor.shape[2:])

        def states(name: str) -> th.Tensor:  # (n_seq, layers, dim) -> (layers, n_seq, dim)
            return data[name].transpose(0, 1).contiguous()

        observations = data["observations"]
        return RecurrentRolloutBufferSamples(
            observations=({key: flat(value) for key, value in observations.items()} if isinstance(observations, dict)
                          else flat(observations)),
            actions=flat(data["actions"]),
            old_values=data["values"].flatten(),
            old_log_prob=data["log_probs"].flatten(),
            advantages=data["advantages"].flatten(),
            returns=data["returns"].flatten(),
            lstm_states=RNNStates((states("hidden_states_pi"), states("cell_states_pi")),
                                  (states("hidden_states_vf"), states("cell_states_vf"))),
            episode_starts=data["episode_starts"].flatten(),
            mask=None,
        )


class MaskableRecurrentRolloutBufferSamples(NamedTuple):
    """sb3-contrib's ``RecurrentRolloutBufferSamples`` plus the action masks of the steps, ``(n, mask_dims)``."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    mask: th.Tensor | None
    action_masks: th.Tensor


class MaskableSequenceRolloutBuffer(SequenceRolloutBuffer):
    """:class:`SequenceRolloutBuffer` that also stores each step's action masks, as sb3-contrib's
    ``MaskableRolloutBuffer`` does: ``(n_steps, n_envs, mask_dims)``, all ones (every action allowed)
    where ``add`` gets none. Minibatches are :class:`MaskableRecurrentRolloutBufferSamples`.
    """

    _step_fields = SequenceRolloutBuffer._step_fields + ("action_masks",)

    def reset(self) -> None:
        self.mask_dims = action_mask_dims(self.action_space)
        self.action_masks = np.ones((self.buffer_size, self.n_envs, self.mask_dims), dtype=np.float32)
        super().reset()

    def add(self, *args, action_masks: np.ndarray | None = None, **kwargs) -> None:
        """Record ``action_masks`` (``(n_envs, mask_dims)``), then the step (:meth:`SequenceRolloutBuffer.add`)."""
        if action_masks is not None:
            self.action_masks[self.pos] = np.asarray(action_masks).reshape(self.n_envs, self.mask_dims)
        super().add(*args, **kwargs)

    def _samples(self, data: dict[str, th.Tensor]) -> MaskableRecurrentRolloutBufferSamples:
        return MaskableRecurrentRolloutBufferSamples(
            *super()._samples(data), action_masks=data["action_masks"].reshape(-1, self.mask_dims))
