"""``SparseRecurrent``: the one recurrent layer behind both jobs."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import statistics as stats_mod
from .backends import BACKENDS, choose_backend, run_backend
from .masks import random_block_mask
from .routing import ChannelRouter, keep_count
from .spec import GATES_PER_CELL
from .update_gates import UPDATE_RATE_MODES, EventGate, RhythmGate, always_open_mask, gated_initial_rate
from .validation import (check_choice, check_float_dtype, check_fraction, check_layer_inputs,
                         check_non_negative, check_positive_int, check_rhythm, check_seed, check_unit_interval,
                         keep_pair)

UPDATE_GATES = (None, "rhythm", "event")


class SparseRecurrent(nn.Module):
    """A recurrent layer with static block sparsity, routed channels and selective update.

    Parameters
    ----------
    input_size, hidden_size : int
    cell : {"gru", "lstm", "elman"}
        ``lstm``/``gru`` compute what ``torch.nn.LSTM``/``torch.nn.GRU`` compute
        (same weight layout and gate order); ``elman`` is ``torch.nn.RNN`` (tanh).
    density_ih, density_hh : float in (0, 1]
        Share of ``W_ih (G*H, I)`` and ``W_hh (G*H, H)`` entries that are
        trainable. Masks are drawn once from ``seed`` and saved in the state
        dict; masked weights are exactly zero and receive zero gradient.
    router_keep : float or (float, float), optional
        DS-RNN routing: keep exactly ``ceil(keep * I)`` input channels and
        ``ceil(keep * H)`` hidden channels per sample and step, chosen by a
        small router reading ``[x_t, h_{t-1}]``. A pair sets input and hidden
        fractions separately; a side at 1.0 is not routed.
    router_rank : int
        Rank of the router's context term.
    router_noise : float >= 0
        Exploration in the top-k: in training mode (``layer.train()``) the kept channels
        are the top-k of ``scores + router_noise * Gumbel noise`` (drawn once per call
        for all steps); the straight-through scale and the router's gradient use the
        noiseless scores. 0 (default) selects on the scores. Only the ``reference``
        backend implements it so far: other backends raise ``NotImplementedError``
        in training mode.
    update_gate : {None, "rhythm", "event"}
        suRNN switch per neuron: ``h_t = h_{t-1}`` exactly where closed.
    rhythm_frequencies : int
        Number of the rhythm gate's sinusoids.
    rhythm_max_period : float
        Longest period of the rhythm gate's sinusoids, in steps.
    rhythm_periods : sequence of float, optional
        The rhythm's initial periods in steps (each >= 2), one sinusoid each, instead of the spread
        up to ``rhythm_max_period``; the time index is the state's ``t`` plus the step, so with ``t``
        the row from a series' start a day in rows follows the clock. Needs ``update_gate="rhythm"``.
    rhythm_learn_periods : bool
        False: ``gate.omega`` is a saved buffer, not a parameter; the periods stay as set.
    initial_update_rate : float in (0, 1], optional
        Fraction of neurons open at initialisation (needs ``update_gate``): for
        ``"rhythm"`` each neuron's schedule offset is set so that it is open on this
        share of its first time indices; for ``"event"`` the switch's bias is set so
        that inputs of unit variance open this share. ``None``: about half open.
        The fast backends skip the work of closed neurons, so a low rate is a
        cheap layer from the start.
        With ``always_open_fraction`` it is the share of the whole layer (always-open
        neurons included), so it must be at least that share.
    always_open_fraction : float in [0, 1]
        Share of neurons that are open at every step (needs ``update_gate`` to mean
        anything; without a gate every neuron is open): the first
        ``floor(fraction * hidden_size + 0.5)`` neurons, whose switch pre-activation
        the gate module holds at a large constant, so every backend follows. The rest
        are gated. A task that needs every step keeps a full-rate path through them.
    target_update_rate : float in (0, 1], optional
        Adds ``update_rate_weight * penalty(rate - target)`` to :meth:`aux_loss`, ``rate``
        being the share of open (step, sample, neuron) switches of the last call,
        always-open neurons included (the compute actually done).
    update_rate_mode : {"ceiling", "set_point"}
        ``"ceiling"``: penalise only a rate above the target, ``max(0, rate - target)^2``
        (exactly 0 at or below it, so neurons stay open where the task needs them within
        the budget); ``"set_point"``: ``(rate - target)^2``, pulling the rate up as well.
    update_rate_weight, router_balance_weight : float >= 0
        Weights of the regularisers; the router balance term is the squared
        coefficient of variation of per-channel router importance.
    backend : {"auto", "reference", "compiled", "fused"}
        ``reference``: the plain loop (the oracle); ``compiled``: hoisted GEMMs
        and ``torch.compile``-d steps; ``fused``: the whole sequence as one
        autograd node with a hand-derived backward.
        ``auto`` applies :func:`~sparsernn.core.choose_backend`'s rule per call
        (:meth:`backend_for`); :attr:`last_backend` tells which one ran.
    seed : int, optional
        Seeds masks and initial weights. ``None`` draws one from torch's global
        generator (so ``torch.manual_seed`` makes it reproducible).
    dtype, device : optional

    Attributes
    ----------
    last_backend : str or None
        The backend that ran the last call ("reference", "compiled" or "fused").
    last_group_size : int
        How many layers ran the last call as one batched loop
        (:func:`~sparsernn.core.group_forward`): 1 for a call on its own, 0 before any call.

    Shapes
    ------
    ``x``: ``(T, B, input_size)``; ``episode_starts``: ``(T, B)`` of 0/1;
    ``state``: ``(B, state_size)`` laid out as ``[h | c | t]`` — ``c`` for the
    LSTM only, ``t`` (time index, a float, no gradient) for the rhythm gate
    only; ``y``: ``(T, B, hidden_size)``. :meth:`pack_state` / :meth:`unpack_state` convert.

    Examples
    --------
    >>> layer = SparseRecurrent(8, 32, cell="gru", density_hh=0.25, update_gate="rhythm", seed=0)
    >>> y, state = layer(torch.randn(10, 4, 8))
    >>> y.shape, state.shape
    (torch.Size([10, 4, 32]), torch.Size([4, 33]))
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str = "gru", density_ih: float = 1.0,
                 density_hh: float = 1.0, router_keep: float | tuple[float, float] | None = None,
                 router_rank: int = 8, router_noise: float = 0.0, update_gate: str | None = None,
                 rhythm_frequencies: int = 4, rhythm_max_period: float = 1000.0,
                 rhythm_periods: tuple[float, ...] | list[float] | None = None,
                 rhythm_learn_periods: bool = True,
                 initial_update_rate: float | None = None, always_open_fraction: float = 0.0,
                 target_update_rate: float | None = None, update_rate_mode: str = "ceiling",
                 update_rate_weight: float = 1.0, router_balance_weight: float = 0.0, backend: str = "auto",
                 seed: int | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        check_choice("cell", cell, list(GATES_PER_CELL))
        check_choice("update_gate", update_gate, list(UPDATE_GATES))
        check_choice("backend", backend, list(BACKENDS))
        check_float_dtype(dtype)
        self.cell = cell
        self.density_ih = check_fraction("density_ih", density_ih)
        self.density_hh = check_fraction("density_hh", density_hh)
        self.router_keep = keep_pair(router_keep)
        self.update_gate = update_gate
        if initial_update_rate is not None:
            initial_update_rate = check_fraction("initial_update_rate", initial_update_rate)
            if update_gate is None:
                raise ValueError(f"initial_update_rate={initial_update_rate} needs an update_gate "
                                 f"({', '.join(repr(g) for g in UPDATE_GATES if g)}); got update_gate=None")
        self.initial_update_rate = initial_update_rate
        self.always_open_fraction = check_unit_interval("always_open_fraction", always_open_fraction)
        self.target_update_rate = (None if target_update_rate is None
                                   else check_fraction("target_update_rate", target_update_rate))
        check_choice("update_rate_mode", update_rate_mode, list(UPDATE_RATE_MODES))
        self.update_rate_mode = update_rate_mode
        self.update_rate_weight = check_non_negative("update_rate_weight", update_rate_weight)
        self.router_balance_weight = check_non_negative("router_balance_weight", router_balance_weight)
        self.router_noise = check_non_negative("router_noise", router_noise)
        self.backend = backend
        if router_keep is not None:
            router_rank = check_positive_int("router_rank", router_rank)
        rhythm_frequencies, rhythm_max_period, rhythm_periods = check_rhythm(
            update_gate, rhythm_frequencies, rhythm_max_period, rhythm_periods, rhythm_learn_periods)
        self.rhythm_periods, self.rhythm_learn_periods = rhythm_periods, rhythm_learn_periods
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else check_seed(seed)
        self.seed = seed
        self.last_backend: str | None = None
        self.last_group_size = 0

        gen = torch.Generator().manual_seed(seed)
        gates, H, I = GATES_PER_CELL[cell], self.hidden_size, self.input_size
        self.register_buffer("mask_ih", random_block_mask((gates * H, I), self.density_ih, gen))
        self.register_buffer("mask_hh", random_block_mask((gates * H, H), self.density_hh, gen))
        self.weight_ih = nn.Parameter(self._init_block(self.mask_ih, self.density_ih, gen))
        self.weight_hh = nn.Parameter(self._init_block(self.mask_hh, self.density_hh, gen))
        bound = 1.0 / math.sqrt(H)
        self.bias_ih = nn.Parameter(torch.empty(gates * H).uniform_(-bound, bound, generator=gen))
        self.bias_hh = nn.Parameter(torch.empty(gates * H).uniform_(-bound, bound, generator=gen))

        self.router = None
        if self.router_keep is not None:
            self.router = ChannelRouter(I, H, router_rank, gen)
        self.keep_count_input = keep_count(self.router_keep[0], I) if self.router_keep else I
        self.keep_count_hidden = keep_count(self.router_keep[1], H) if self.router_keep else H

        self.gate = None
        if update_gate is not None:
            gated_rate = gated_initial_rate(initial_update_rate, always_open_mask(H, self.always_open_fraction))
            self.gate = (RhythmGate(H, rhythm_frequencies, rhythm_max_period, gen, gated_rate, always_open_fraction,
                                    periods=rhythm_periods, learn_periods=rhythm_learn_periods)
                         if update_gate == "rhythm" else EventGate(I, H, gen, gated_rate, always_open_fraction))
        self.to(dtype=dtype or torch.get_default_dtype(), device=device)
        self._last_trace: dict[str, Any] | None = None

    def _init_block(self, mask: torch.Tensor, density: float, gen: torch.Generator) -> torch.Tensor:
        # torch's RNN init U(-1/sqrt(H), 1/sqrt(H)), widened so that a sparse
        # block keeps the pre-activation variance of a dense one.
        bound = 1.0 / math.sqrt(max(1.0, density * self.hidden_size))
        return torch.empty(mask.shape).uniform_(-bound, bound, generator=gen) * mask

    # ----------------------------------------------------------------- sizes
    @property
    def state_size(self) -> int:
        """Width of the packed state: ``H`` (+ ``H`` for lstm) (+ 1 for rhythm)."""
        return self.hidden_size * (2 if self.cell == "lstm" else 1) + (1 if self.update_gate == "rhythm" else 0)

    def trainable_counts(self) -> tuple[int, int]:
        """``(N_ih, N_hh)``: trainable (unmasked) entries of ``W_ih`` and ``W_hh``."""
        return int(self.mask_ih.sum()), int(self.mask_hh.sum())

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_ih ⊙ mask_ih, W_hh ⊙ mask_hh)``; a block whose mask is all True is returned as is
        (the densities are those of the masks: :meth:`_load_from_state_dict` resets them)."""
        w_ih = self.weight_ih if self.density_ih == 1.0 else self.weight_ih * self.mask_ih
        w_hh = self.weight_hh if self.density_hh == 1.0 else self.weight_hh * self.mask_hh
        return w_ih, w_hh

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Load as ``nn.Module`` does, then let the loaded masks govern: ``density_ih`` /
        ``density_hh`` become the masks' realised densities (1.0 only for an all-True mask, so a
        layer built dense that loads a sparse layer's masks multiplies them in, and its masked
        weights get zero gradient), and masked weights are set to exactly zero."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        with torch.no_grad():
            for block in ("ih", "hh"):
                mask = getattr(self, f"mask_{block}")
                kept = int(mask.sum())
                density = 1.0 if kept == mask.numel() else kept / mask.numel()
                self.__dict__[f"density_{block}"] = density
                if density < 1.0:
                    getattr(self, f"weight_{block}").mul_(mask)

    def __getstate__(self) -> dict[str, Any]:
        """What ``copy.deepcopy`` and pickling copy: the module, with the last call's trace
        detached (it holds tensors of the caller's autograd graph, which deepcopy refuses)."""
        state = self.__dict__.copy()
        state.pop("_transposed_weights", None)  # a cache of the fused routed loops, rebuilt on use
        trace = state.get("_last_trace")
        if trace is not None:
            state["_last_trace"] = {key: stats_mod.detached(value) for key, value in trace.items()}
        return state

    # ----------------------------------------------------------------- state
    def initial_state(self, batch_size: int, time: torch.Tensor | None = None) -> torch.Tensor:
        """Zeros of shape ``(batch_size, state_size)``; with ``time (batch_size,)`` the rhythm's time
        index starts there (e.g. a window's row in its series; ignored by a layer without a rhythm)."""
        state = self.weight_hh.new_zeros(batch_size, self.state_size)
        if time is not None and self.update_gate == "rhythm":
            state[:, -1] = time.to(state)
        return state

    def pack_state(self, h: torch.Tensor, c: torch.Tensor | None = None, time: torch.Tensor | None = None):
        """``h (B, H)``, ``c (B, H)``, ``time (B,)`` → ``(B, state_size)``."""
        parts = [h]
        if self.cell == "lstm":
            parts.append(c if c is not None else torch.zeros_like(h))
        if self.update_gate == "rhythm":
            parts.append((time if time is not None else h.new_zeros(h.shape[0])).unsqueeze(1))
        return torch.cat(parts, dim=1) if len(parts) > 1 else h

    def unpack_state(self, state: torch.Tensor):
        """``(B, state_size)`` → ``(h, c, time)``; ``c``/``time`` are None when unused."""
        H = self.hidden_size
        h = state[:, :H]
        c = state[:, H:2 * H] if self.cell == "lstm" else None
        time = state[:, -1] if self.update_gate == "rhythm" else None
        return h, c, time

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None,
                episode_starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the layer over a sequence.

        Parameters
        ----------
        x : tensor of shape (T, B, input_size)
        state : tensor of shape (B, state_size), optional (zeros)
        episode_starts : tensor of shape (T, B) of 0/1, optional
            Where 1, the state entering step t is reset to zeros.

        Returns
        -------
        y : tensor of shape (T, B, hidden_size)
        state : tensor of shape (B, state_size)
        """
        self._check_inputs(x, state, episode_starts)
        if state is None:
            state = self.initial_state(x.shape[1])
        h, c, time = self.unpack_state(state)
        if time is not None:
            time = time.detach()  # a counter: the time index carries no gradient
        backend = self.backend_for(x)
        y, (h, c, time), trace = run_backend(backend, self, x, h, c, time, episode_starts)
        self._record_call(backend, trace)
        return y, self.pack_state(h, c, time)

    def backend_for(self, x: torch.Tensor) -> str:
        """The backend a call on ``x (T, B, input_size)`` runs: :attr:`backend`, or for ``"auto"``
        :func:`~sparsernn.core.choose_backend`'s pick for ``x``'s device and shape."""
        backend = self.backend if self.backend != "auto" else choose_backend(x, self)
        if backend != "reference" and self.router is not None and self.router_noise > 0 and self.training:
            raise NotImplementedError(f"router_noise={self.router_noise} (Gumbel exploration in the top-k) runs on "
                                      f"the reference backend only; this call would run {backend!r}: build the "
                                      "layer with backend='reference', or call layer.eval()")
        return backend

    def _record_call(self, backend: str, trace: dict[str, Any], group_size: int = 1) -> None:
        """Remember which backend ran, in a group of how many layers (:func:`~sparsernn.core.group_forward`),
        and the call's trace (for :meth:`statistics`, :meth:`aux_loss`).

        Written to ``__dict__`` directly: ``nn.Module.__setattr__`` costs microseconds per
        attribute, which adds up for RL's one-step calls."""
        self.__dict__["last_backend"] = backend
        self.__dict__["last_group_size"] = group_size
        self.__dict__["_last_trace"] = trace

    def _check_inputs(self, x, state, episode_starts) -> None:
        check_layer_inputs(self, x, state, episode_starts)

    def kept_channels(self, x: torch.Tensor, state: torch.Tensor | None = None,
                      episode_starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which channels the router keeps at each step of a run over ``x (T, B, input_size)``
        from ``state`` (zeros if None) with ``episode_starts (T, B)``: boolean masks
        ``(T, B, input_size)`` and ``(T, B, hidden_size)``, exactly the budget per row (all True
        without a router); see :func:`~sparsernn.core.routing.kept_channels`."""
        from .routing import kept_channels

        self._check_inputs(x, state, episode_starts)
        return kept_channels(self, x, state, episode_starts)

    def set_router_keep(self, keep: float | tuple[float, float]) -> None:
        """Change the routing budget: ``keep`` as in ``router_keep`` (one fraction or a pair).

        The keep counts ``ceil(keep * width)`` are recomputed, so the next call keeps
        exactly that many channels per sample and step (used to anneal the budget from
        1.0 to the target during training). Refused with a ``ValueError`` (nothing
        changed) when the layer has no router or ``keep`` is not a fraction / pair.
        """
        if self.router is None:
            raise ValueError("set_router_keep needs a routed layer (built with router_keep); this one has none")
        pair = keep_pair(keep)
        if pair is None:
            raise ValueError("keep must be a fraction in (0, 1] or a pair (keep_input, keep_hidden); got None")
        counts = keep_count(pair[0], self.input_size), keep_count(pair[1], self.hidden_size)
        self.router_keep = pair
        self.keep_count_input, self.keep_count_hidden = counts

    # ------------------------------------------------------- stats and losses
    def statistics(self) -> dict[str, float]:
        """Statistics of the last call, for logging: realised densities, hidden
        proportion, active input / hidden fractions, update rate, computed fraction."""
        return stats_mod.layer_statistics(self, self._last_trace)

    def channel_usage(self) -> dict[str, torch.Tensor]:
        """Per channel, the share of the last call's (step, sample) rows that kept it (routed
        layers): ``{"input": (input_size,), "hidden": (hidden_size,)}``, each entry in [0, 1]
        and ``mean() == keep_count / width``; ``{}`` for an unrouted layer or before the first call
        (every backend records its selection)."""
        return stats_mod.channel_usage(self, self._last_trace)

    def update_usage(self) -> torch.Tensor | None:
        """Per neuron, the share of the last call's (step, sample) pairs at which its switch was open
        (gated layers): float64 ``(hidden_size,)`` in [0, 1], its mean the call's ``update_rate``;
        None for a layer without an update gate or before the first call (as :meth:`channel_usage`
        gives ``{}``: nothing to report)."""
        return stats_mod.update_usage(self, self._last_trace)

    def aux_loss(self) -> torch.Tensor:
        """The layer's regularisers on its last call (a scalar with gradient):
        update-rate target and router balance; exactly zero when none is configured."""
        return stats_mod.aux_loss(self, self._last_trace)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}, cell={self.cell!r}"]
        if self.density_ih < 1 or self.density_hh < 1:
            parts.append(f"density_ih={self.density_ih:g}, density_hh={self.density_hh:g}")
        if self.router_keep:
            parts.append(f"router_keep={self.router_keep}")
        if self.update_gate:
            parts.append(f"update_gate={self.update_gate!r}")
            if self.always_open_fraction:
                parts.append(f"always_open_fraction={self.always_open_fraction:g}")
            if self.rhythm_periods is not None:  # (the geometric spread is the rhythm's default)
                parts.append(f"rhythm_periods={self.rhythm_periods}, rhythm_learn_periods={self.rhythm_learn_periods}")
        parts.append(f"backend={self.backend!r}, seed={self.seed}")
        return ", ".join(parts)

    # ---------------------------------------------------------- construction
    @classmethod
    def from_torch(cls, module: nn.Module, **kwargs: Any) -> "SparseRecurrent":
        """A dense layer with the weights of a single-layer, unidirectional
        ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (tanh). ``kwargs`` add options
        (e.g. ``backend``); sparsity options start from the copied weights.
        """
        kinds = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "elman"}
        cell = kinds.get(type(module))
        if cell is None:
            raise TypeError(f"module must be a torch.nn.LSTM, GRU or RNN; got {type(module).__name__}")
        if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError(f"module must be single-layer, unidirectional, without proj_size; got "
                             f"num_layers={module.num_layers}, bidirectional={module.bidirectional}, "
                             f"proj_size={getattr(module, 'proj_size', 0)}")
        if cell == "elman" and module.nonlinearity != "tanh":
            raise ValueError(f"nn.RNN must use nonlinearity='tanh'; got {module.nonlinearity!r}")
        ref = module.weight_hh_l0
        layer = cls(module.input_size, module.hidden_size, cell=cell, dtype=ref.dtype, device=ref.device, **kwargs)
        with torch.no_grad():
            layer.weight_ih.copy_(module.weight_ih_l0 * layer.mask_ih)
            layer.weight_hh.copy_(module.weight_hh_l0 * layer.mask_hh)
            if module.bias:
                layer.bias_ih.copy_(module.bias_ih_l0)
                layer.bias_hh.copy_(module.bias_hh_l0)
            else:
                layer.bias_ih.zero_()
                layer.bias_hh.zero_()
        return layer
