"""The named policy variants that ``scripts/bench_rl.py`` and ``scripts/rl_quality.py`` compare: one table.

A variant is an algorithm of :data:`~sparsernn.agents.ALGOS`, a policy and the
policy options it adds to a config's ``policy_kwargs``; :func:`variant_policy_kwargs`
merges the two (renaming or dropping the config's recurrent options where the
variant's policy names them otherwise or has none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One named variant.

    Parameters
    ----------
    algo : {"sparse", "recurrent", "ppo"}
        Key of :data:`~sparsernn.agents.ALGOS`.
    policy : str
        Policy name the algorithm accepts (``"SparseRecurrentPolicy"``, ``"MlpLstmPolicy"``, ``"MlpPolicy"``).
    policy_kwargs : dict
        Options added to (and overriding) the config's ``policy_kwargs``.
    ppo_kwargs : dict
        Options added to (and overriding) the config's ``ppo_kwargs`` (e.g. ``router_anneal``).
    """

    algo: str
    policy: str
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    ppo_kwargs: dict[str, Any] = field(default_factory=dict)


_SPARSE = "SparseRecurrentPolicy"
_NO_ANNEAL = {"router_anneal": 0.0}  # routed at the final budget from the first update

#: Variants by name: stock sb3-contrib and SB3 baselines, then SparseRecurrentPolicy's layers.
VARIANTS: dict[str, Variant] = {
    "stock-lstm": Variant("recurrent", "MlpLstmPolicy"),
    "ppo-mlp": Variant("ppo", "MlpPolicy"),
    "lstm": Variant("sparse", _SPARSE, {"cell": "lstm"}),
    # PendulumNoVel (docs/rl_parity.md): the LSTM's two initialisations named, since "lstm" changed
    # default: "stockinit" starts from the nn.LSTM weights that sb3-contrib draws at the same seed
    # (the default since then), "layerinit" from the layer's own draw (the default before).
    "lstm-stockinit": Variant("sparse", _SPARSE, {"cell": "lstm", "recurrent_init": "stock"}),
    "lstm-layerinit": Variant("sparse", _SPARSE, {"cell": "lstm", "recurrent_init": "layer"}),
    "gru": Variant("sparse", _SPARSE, {"cell": "gru"}),
    "gru-core": Variant("sparse", _SPARSE, {"cell": "gru", "backend": "reference"}),
    "gru-d0.1": Variant("sparse", _SPARSE, {"cell": "gru", "density_ih": 0.1, "density_hh": 0.1}),
    # Routed GRUs as a user writes them: one fraction, which SparseRecurrentPolicy applies to the hidden
    # side only when the observation is narrower than the state (policies/options.py:policy_router_keep).
    **{f"gru-router{keep}": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": keep})
       for keep in (0.5, 0.25, 0.1)},
    # Issue 12's measurements at hidden keep 0.1, one change at a time, the sides given as pairs: "-both"
    # routes the input too (1 of CartPoleNoVel's 2 observations), "-hidden" the hidden side only;
    # "-anneal" anneals keep from 1.0 to the target over the first 25 % of training; "-gumbel" adds Gumbel
    # noise (scale 1) to the scores that select (reference backend); "-balance" weighs the router
    # balance regulariser 0.1.
    "gru-router0.1-both": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (0.1, 0.1)}, _NO_ANNEAL),
    "gru-router0.1-both-anneal": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (0.1, 0.1)},
                                         {"router_anneal": 0.25}),
    "gru-router0.1-hidden": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (1.0, 0.1)}, _NO_ANNEAL),
    "gru-router0.1-hidden-anneal": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (1.0, 0.1)},
                                           {"router_anneal": 0.25}),
    "gru-router0.1-hidden-gumbel": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (1.0, 0.1),
                                                               "router_noise": 1.0, "backend": "reference"},
                                           _NO_ANNEAL),
    "gru-router0.1-hidden-balance": Variant("sparse", _SPARSE, {"cell": "gru", "router_keep": (1.0, 0.1),
                                                                "router_balance_weight": 0.1}, _NO_ANNEAL),
    "gru-event": Variant("sparse", _SPARSE, {"cell": "gru", "update_gate": "event", "target_update_rate": 0.5}),
    # Issue 13's RL target: a gated GRU at update rate 0.5 from the start (initial_update_rate) and kept
    # there (target_update_rate), to compare with the dense "gru" in env-steps/s.
    # Rate 0.1: the selective loops skip closed neurons (at RL's widths only for layers set at most 0.3 open).
    **{f"gru-{gate}{rate:g}": Variant("sparse", _SPARSE, {"cell": "gru", "update_gate": gate,
                                                          "initial_update_rate": rate, "target_update_rate": rate})
       for gate in ("event", "rhythm") for rate in (0.5, 0.1)},
    # Issue 13: gated GRUs with every other layer option at its default (what the defaults of the commit
    # that runs them give).
    "gru-event-default": Variant("sparse", _SPARSE, {"cell": "gru", "update_gate": "event"}),
    "gru-rhythm-default": Variant("sparse", _SPARSE, {"cell": "gru", "update_gate": "rhythm"}),
    # Issue 13's screen at a tight budget (30 % of the switches open from the start and at most / about
    # that many after): the rate target as a set point or a ceiling, with and without always-open neurons.
    **{f"gru-event-r0.3-{mode}{suffix}": Variant("sparse", _SPARSE, {
        "cell": "gru", "update_gate": "event", "initial_update_rate": 0.3, "target_update_rate": 0.3,
        "update_rate_mode": mode.replace("setpoint", "set_point"), "always_open_fraction": fraction})
       for mode in ("setpoint", "ceiling") for suffix, fraction in (("", 0.0), ("-open0.25", 0.25))},
    # Issue 13 (memory across a thousand steps): the event gate with no rate target, 30 % of neurons open at
    # initialisation for unit-variance inputs (b = Phi^-1(0.3)/sqrt(3) = -0.30). In silence the switch sees
    # x = 0, so a = b + w * h: a neuron closed after the cue stays closed, its state exact, until the query.
    "gru-event-r0.3": Variant("sparse", _SPARSE, {"cell": "gru", "update_gate": "event", "initial_update_rate": 0.3}),
    "stock-policy-sparse-ppo": Variant("sparse", "MlpLstmPolicy"),
    # The converse control (PendulumNoVel, docs/rl_parity.md): our LSTM policy, initialised as "lstm" was
    # when the gap was measured (the layer's own draw), in sb3-contrib's own RecurrentPPO loop (its buffer:
    # episode-split, padded, randomly rotated minibatches in order).
    "lstm-stock-ppo": Variant("recurrent", _SPARSE, {"cell": "lstm", "recurrent_init": "layer"}),
    # ... and from stock's own initial weights: at the same seed this is stock's run but for float rounding
    # (our LSTM kernel, fused Adam), which the closed loop amplifies into a different trajectory.
    "lstm-stockinit-stock-ppo": Variant("recurrent", _SPARSE, {"cell": "lstm", "recurrent_init": "stock"}),
}

#: Config options that only recurrent policies take (dropped for feed-forward PPO).
RECURRENT_KEYS = ("hidden_size", "enable_critic_lstm", "shared_lstm")


def variant_policy_kwargs(name: str, base: dict[str, Any]) -> dict[str, Any]:
    """A config's ``policy_kwargs`` made fit for variant ``name``'s policy, plus the variant's options.

    Parameters
    ----------
    name : str
        Key of :data:`VARIANTS`.
    base : dict
        The config's ``policy_kwargs`` (not modified).

    Returns
    -------
    dict
        For feed-forward PPO ``base`` without :data:`RECURRENT_KEYS`; for sb3-contrib's
        ``MlpLstmPolicy`` ``hidden_size`` renamed ``lstm_hidden_size`` (default 64); then the
        variant's own ``policy_kwargs`` on top.
    """
    if name not in VARIANTS:
        raise ValueError(f"name must be one of {list(VARIANTS)}; got {name!r}")
    variant = VARIANTS[name]
    kwargs = dict(base)
    if variant.algo == "ppo":
        kwargs = {key: value for key, value in kwargs.items() if key not in RECURRENT_KEYS}
    elif variant.policy == "MlpLstmPolicy":
        kwargs["lstm_hidden_size"] = kwargs.pop("hidden_size", 64)
    return {**kwargs, **variant.policy_kwargs}
