"""``SparseRecurrentPolicy``: sb3-contrib's recurrent actor-critic with a
:class:`~sparsernn.core.SparseRecurrent` core."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.torch_layers import CombinedExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sparsernn.core import SparseRecurrent, group_forward

from .action_heads import log_prob_and_entropy, sample_actions
from .core_adapter import RecurrentCore, StatePair
from .options import LAYER_OPTIONS, policy_router_keep, resolve_layer_options


class SparseRecurrentPolicy(RecurrentActorCriticPolicy):
    """Recurrent actor-critic policy whose LSTM is a sparse / routed / selective-update layer.

    Use it wherever sb3-contrib takes a recurrent policy::

        RecurrentPPO(SparseRecurrentPolicy, env,
                     policy_kwargs=dict(cell="gru", hidden_size=64, density_hh=0.1))

    It changes three things of :class:`~sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy`:
    the actor (and critic) ``nn.LSTM`` become :class:`~sparsernn.policies.RecurrentCore`
    adapters around :class:`~sparsernn.core.SparseRecurrent`, and
    :meth:`_process_sequence` hands each whole batch of sequences to the core in
    one call, with the episode resets inside it (no per-step Python loop).
    When the actor and critic layers read the same features,
    :meth:`forward` and :meth:`evaluate_actions` hand them to
    :func:`~sparsernn.core.group_forward`, which runs them as one group (one
    batched step for both, same results) where the layers' backend is
    ``fused``. The layers pick their backend (``backend``, default ``"auto"``:
    :func:`~sparsernn.core.choose_backend`'s rule); each adapter's
    ``last_backend`` and ``last_group_size`` tell what ran. And for
    ``Discrete`` and ``Box`` actions, :meth:`forward` and :meth:`evaluate_actions`
    compute samples, log-probabilities and entropies directly
    (:mod:`~sparsernn.policies.action_heads`) instead of through a
    ``torch.distributions`` object per call.
    Dict observation spaces get SB3's ``CombinedExtractor`` (each key flattened or
    one-hot encoded, then concatenated) unless ``features_extractor_class`` is given,
    as SB3's ``MultiInputPolicy``.
    sb3-contrib's options keep their meaning: ``shared_lstm``,
    ``enable_critic_lstm``, ``net_arch``, ``activation_fn``, ``ortho_init``
    (which, as in sb3-contrib, does not touch the recurrent weights), etc.

    Parameters
    ----------
    observation_space, action_space, lr_schedule
        As for any SB3 policy.
    hidden_size : int or None
        Recurrent units (default 64). ``None`` lets ``param_budget`` choose.
    param_budget, hidden_proportion : int, float, optional
        A-priori specification (both or neither): trainable recurrent weights
        ``N_ih + N_hh`` and ``N_hh / (N_ih + N_hh)``; the densities are solved
        by :func:`~sparsernn.core.solve_layer_spec` at the features' width.
    seed : int, optional
        Seeds the actor layer's masks and weights (the critic's uses
        ``seed + 1``). ``None`` draws from torch's generator, which SB3 seeds.
    recurrent_init : {"auto", "stock", "layer"}
        Where the recurrent weights start. ``"stock"``: the weights of the
        ``nn.LSTM`` that sb3-contrib's ``MlpLstmPolicy`` draws at this point of
        torch's generator (the parent class builds it; they are copied), so that
        at the same SB3 ``seed`` our policy starts from exactly stock's weights and
        torch's generator is left where stock's is; only a dense, unrouted, ungated
        LSTM layer without ``seed`` can take them. ``"layer"``: the layer draws its
        own from its ``seed`` (the same distribution, U(-1/sqrt(H), 1/sqrt(H)),
        other values). ``"auto"`` (default): ``"stock"`` where it applies, else
        ``"layer"``. See ``docs/rl_parity.md`` (PendulumNoVel).
    kernel : {"fused", "core"}, optional
        Deprecated (models saved before ``backend`` was the one word store it):
        ``"fused"`` becomes ``backend="fused"`` (what it ran), ``"core"`` keeps
        ``backend``; either warns with a ``DeprecationWarning``.
    optimizer_class, optimizer_kwargs
        As in SB3; Adam/AdamW get ``fused=True`` unless ``fused`` or
        ``foreach`` is given (one kernel per step for all parameters).
    lstm_hidden_size : int, optional
        sb3-contrib's name for ``hidden_size``, accepted as an alias.
    n_lstm_layers : int
        Must be 1.
    **kwargs
        Every :class:`~sparsernn.core.SparseRecurrent` option but the sizes, seed,
        dtype and device (:data:`~sparsernn.policies.LAYER_OPTIONS`, with the layer's
        defaults), and the remaining :class:`RecurrentActorCriticPolicy` arguments.

    Notes
    -----
    State layout: sb3-contrib's ``(h, c)`` pairs carry the core's packed state
    ``(1, n_envs, state_size)`` in slot 0 (slot 1 is the same tensor); see
    :mod:`sparsernn.policies.core_adapter`. ``predict`` returns that pair.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 hidden_size: int | None = 64, param_budget: int | None = None,
                 hidden_proportion: float | None = None, seed: int | None = None, kernel: str | None = None,
                 lstm_hidden_size: int | None = None, n_lstm_layers: int = 1,
                 lstm_kwargs: dict[str, Any] | None = None, recurrent_init: str = "auto", **kwargs: Any) -> None:
        if lstm_hidden_size is not None:
            if hidden_size not in (None, 64, lstm_hidden_size):
                raise ValueError(f"hidden_size={hidden_size} and lstm_hidden_size={lstm_hidden_size} disagree; "
                                 f"give one of them")
            hidden_size = lstm_hidden_size
        if n_lstm_layers != 1:
            raise ValueError(f"n_lstm_layers must be 1 (one SparseRecurrent layer); got {n_lstm_layers!r}")
        if lstm_kwargs:
            raise TypeError(f"lstm_kwargs is not used by SparseRecurrentPolicy (got {lstm_kwargs!r}); "
                            f"pass the layer options directly: {sorted(LAYER_OPTIONS)}")
        layer_options = {key: kwargs.pop(key) for key in list(kwargs) if key in LAYER_OPTIONS}
        if isinstance(observation_space, spaces.Dict):  # SB3's MultiInputPolicy default
            kwargs.setdefault("features_extractor_class", CombinedExtractor)
        if kernel is not None:
            layer_options = _map_deprecated_kernel(kernel, layer_options)
        input_size = None
        if param_budget is not None:
            input_size = self._probe_features_dim(observation_space, kwargs)
        hidden_size, self.layer_kwargs = resolve_layer_options(
            input_size or 1, hidden_size, param_budget, hidden_proportion, layer_options)
        self.hidden_size = hidden_size
        self.param_budget, self.hidden_proportion, self.seed = param_budget, hidden_proportion, seed
        self.recurrent_init = recurrent_init
        stock_init = self._stock_init(recurrent_init, seed, self.layer_kwargs)
        super().__init__(observation_space, action_space, lr_schedule, lstm_hidden_size=hidden_size,
                         n_lstm_layers=1, **kwargs)
        # Replace the nn.LSTMs built by the parent with the sparse core (starting from their weights
        # under recurrent_init="stock").
        self.lstm_actor = self._make_core(seed, self.lstm_actor if stock_init else None)
        if self.lstm_critic is not None:
            self.lstm_critic = self._make_core(None if seed is None else seed + 1,
                                               self.lstm_critic if stock_init else None)
        self.lstm_hidden_state_shape = (1, 1, self.lstm_actor.hidden_size)
        if self.optimizer_class in (torch.optim.Adam, torch.optim.AdamW) and \
                not {"fused", "foreach"} & set(self.optimizer_kwargs):
            # One kernel for all parameters: the same Adam step, ~4x cheaper for a policy this small.
            self.optimizer_kwargs = {**self.optimizer_kwargs, "fused": True}
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    @staticmethod
    def _probe_features_dim(observation_space: spaces.Space, kwargs: dict[str, Any]) -> int:
        """Width of the features the layer will read (needed to solve a budget)."""
        from stable_baselines3.common.torch_layers import FlattenExtractor

        extractor_class = kwargs.get("features_extractor_class", FlattenExtractor)
        extractor = extractor_class(observation_space, **(kwargs.get("features_extractor_kwargs") or {}))
        return int(extractor.features_dim)

    @staticmethod
    def _stock_init(recurrent_init: str, seed: int | None, layer_kwargs: dict[str, Any]) -> bool:
        """Whether the layers start from the parent's ``nn.LSTM`` weights (``recurrent_init``)."""
        if recurrent_init not in ("auto", "stock", "layer"):
            raise ValueError(f"recurrent_init must be 'auto', 'stock' or 'layer'; got {recurrent_init!r}")
        unlike_stock = {key: layer_kwargs[key] for key, default in
                        (("cell", "lstm"), ("density_ih", 1.0), ("density_hh", 1.0), ("router_keep", None),
                         ("update_gate", None)) if layer_kwargs[key] != default}
        if seed is not None:
            unlike_stock["seed"] = seed
        if recurrent_init == "stock" and unlike_stock:
            raise ValueError(f"recurrent_init='stock' copies sb3-contrib's nn.LSTM weights, which only a dense, "
                             f"unrouted, ungated LSTM layer without its own seed can take; got {unlike_stock}")
        return recurrent_init == "stock" or (recurrent_init == "auto" and not unlike_stock)

    def _make_core(self, seed: int | None, stock: nn.LSTM | None = None) -> RecurrentCore:
        kwargs = {**self.layer_kwargs, "router_keep": policy_router_keep(self.layer_kwargs["router_keep"],
                                                                         self.features_dim, self.hidden_size)}
        if stock is None:
            layer = SparseRecurrent(self.features_dim, self.hidden_size, seed=seed, **kwargs)
        else:  # dense: the layer's seed draws nothing that stays (all-True masks), so a fixed one keeps
            # torch's generator untouched, where stock's construction leaves it
            kwargs.pop("cell")
            layer = SparseRecurrent.from_torch(stock, seed=0, **kwargs)
        return RecurrentCore(layer)

    @staticmethod
    def _process_sequence(features: torch.Tensor, lstm_states: StatePair, episode_starts: torch.Tensor,
                          lstm: nn.Module) -> tuple[torch.Tensor, StatePair]:
        """Run the core once over a batch of sequences.

        ``features`` is ``(n_seq * seq_len, features_dim)`` in sequence-major
        order and ``episode_starts`` ``(n_seq * seq_len,)``, as sb3-contrib lays
        them out; ``n_seq`` is read from the state. Resets happen inside the call.
        """
        n_seq = lstm_states[0].shape[1]
        x = features.reshape(n_seq, -1, lstm.input_size).transpose(0, 1)
        starts = episode_starts.reshape(n_seq, -1).transpose(0, 1)
        y, states = lstm(x, lstm_states, starts)
        return y.transpose(0, 1).reshape(-1, y.shape[-1]), states

    # ------------------------------------------------------- acting, evaluating
    def _latents(self, obs: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor):
        """Actor and critic latents ``(N, .)`` and the new states, as sb3-contrib's ``forward`` computes them.

        An actor and a critic layer reading the same features run through
        :func:`~sparsernn.core.group_forward` (one batched fused loop where their backend is fused)."""
        features = self.extract_features(obs)
        if self.lstm_critic is not None and self.share_features_extractor:
            n_seq = lstm_states.pi[0].shape[1]
            x = features.reshape(n_seq, -1, features.shape[-1]).transpose(0, 1)
            starts = episode_starts.reshape(n_seq, -1).transpose(0, 1)
            (y_pi, s_pi), (y_vf, s_vf) = group_forward(
                [self.lstm_actor.layer, self.lstm_critic.layer], x, [lstm_states.pi[0][0], lstm_states.vf[0][0]],
                starts)
            s_pi, s_vf = s_pi.unsqueeze(0), s_vf.unsqueeze(0)
            latent_pi = y_pi.transpose(0, 1).reshape(-1, y_pi.shape[-1])
            latent_vf = y_vf.transpose(0, 1).reshape(-1, y_vf.shape[-1])
            states = RNNStates((s_pi, s_pi), (s_vf, s_vf))
        else:
            pi_features, vf_features = (features, features) if self.share_features_extractor else features
            latent_pi, states_pi = self._process_sequence(pi_features, lstm_states.pi, episode_starts,
                                                          self.lstm_actor)
            if self.lstm_critic is not None:
                latent_vf, states_vf = self._process_sequence(vf_features, lstm_states.vf, episode_starts,
                                                              self.lstm_critic)
            elif self.shared_lstm:  # re-use the actor's features without backpropagating into them
                latent_vf, states_vf = latent_pi.detach(), (states_pi[0].detach(), states_pi[1].detach())
            else:  # feed-forward critic
                latent_vf, states_vf = self.critic(vf_features), states_pi
            states = RNNStates(states_pi, states_vf)
        return self.mlp_extractor.forward_actor(latent_pi), self.mlp_extractor.forward_critic(latent_vf), states

    def forward(self, obs: torch.Tensor, lstm_states: RNNStates, episode_starts: torch.Tensor,
                deterministic: bool = False):
        """Actions, values, log-probabilities and new states, as sb3-contrib's (the action
        distribution computed by :mod:`~sparsernn.policies.action_heads`)."""
        latent_pi, latent_vf, states = self._latents(obs, lstm_states, episode_starts)
        actions, log_prob = sample_actions(self, latent_pi, deterministic)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent_vf), log_prob, states

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, lstm_states: RNNStates,
                         episode_starts: torch.Tensor):
        """Values, log-probabilities of ``actions`` and entropies, as sb3-contrib's."""
        latent_pi, latent_vf, _ = self._latents(obs, lstm_states, episode_starts)
        log_prob, entropy = log_prob_and_entropy(self, latent_pi, actions)
        return self.value_net(latent_vf), log_prob, entropy

    # ----------------------------------------------------------- sparsernn API
    @property
    def recurrent_layers(self) -> dict[str, SparseRecurrent]:
        """The policy's core layers by role: ``"actor"`` and, with a recurrent critic, ``"critic"``."""
        layers = {"actor": self.lstm_actor.layer}
        if self.lstm_critic is not None:
            layers["critic"] = self.lstm_critic.layer
        return layers

    def aux_loss(self) -> torch.Tensor:
        """Sum of the core layers' :meth:`~sparsernn.core.SparseRecurrent.aux_loss` on their last call."""
        losses = [layer.aux_loss() for layer in self.recurrent_layers.values()]
        return torch.stack(losses).sum()

    def statistics(self) -> dict[str, float]:
        """The core layers' statistics of their last call, keyed ``"<role>/<name>"``."""
        return {f"{role}/{name}": value for role, layer in self.recurrent_layers.items()
                for name, value in layer.statistics().items()}

    def channel_usage(self) -> dict[str, torch.Tensor]:
        """The routed core layers' per-channel keep shares on their last call
        (:meth:`~sparsernn.core.SparseRecurrent.channel_usage`), keyed ``"<role>/<input|hidden>"``;
        empty for unrouted layers."""
        return {f"{role}/{side}": usage for role, layer in self.recurrent_layers.items()
                for side, usage in layer.channel_usage().items()}

    def update_usage(self) -> dict[str, torch.Tensor]:
        """The gated core layers' per-neuron open shares on their last call
        (:meth:`~sparsernn.core.SparseRecurrent.update_usage`), keyed by role; empty for ungated layers."""
        usages = {role: layer.update_usage() for role, layer in self.recurrent_layers.items()}
        return {role: usage for role, usage in usages.items() if usage is not None}

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden_size=self.hidden_size, param_budget=self.param_budget,
                    hidden_proportion=self.hidden_proportion, seed=self.seed, recurrent_init=self.recurrent_init,
                    shared_lstm=self.shared_lstm,
                    enable_critic_lstm=self.enable_critic_lstm)
        if self.param_budget is not None:  # the budget re-solves the densities
            data.update({k: v for k, v in self.layer_kwargs.items() if not k.startswith("density")})
        else:
            data.update(self.layer_kwargs)
        return data


def _map_deprecated_kernel(kernel: object, layer_options: dict[str, Any]) -> dict[str, Any]:
    """The layer options meaning what ``kernel`` meant before ``backend`` was the one word:
    ``"fused"`` ran the fused backend whatever ``backend`` said; ``"core"`` ran ``backend``."""
    if kernel not in ("fused", "core"):
        raise ValueError(f"kernel (deprecated: use backend) must be 'fused' or 'core'; got {kernel!r}")
    meaning = "backend='fused'" if kernel == "fused" else "the layer's backend"
    warnings.warn(f"SparseRecurrentPolicy(kernel={kernel!r}) is deprecated: the layer picks its kernel by its "
                  f"backend option; running {meaning} (a model saved before the change stores kernel)",
                  DeprecationWarning, stacklevel=3)
    return {**layer_options, "backend": "fused"} if kernel == "fused" else layer_options
