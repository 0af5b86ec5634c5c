"""The search space of a sweep over :class:`~sparsernn.agents.SparseRecurrentPPO`: the layer's options and PPO's.

One sampler serves both engines: rl-zoo3's ``-optimize`` (registered by
:mod:`sparsernn.agents.zoo` under :data:`ZOO_ALGO`, with rl-zoo3's signature
``sampler(trial, n_actions, n_envs, additional_args)``) and our own
``python -m sparsernn.agents sweep`` (:mod:`sparsernn.agents.sweep`).

A sample is drawn in two steps, as rl-zoo3 does: :func:`suggest` asks the trial
for raw parameters (the names an Optuna study stores: ``n_steps_pow``,
``one_minus_gamma``, ``cell``, ...), and :func:`convert` turns them into the
model's keyword arguments (``{"policy_kwargs": {...}, "n_steps": 64, ...}``).
rl-zoo3 reloads a finished trial with the converter alone
(``--storage ... --study-name ... --trial-id N``), so :func:`convert` needs
nothing but the stored parameters.

Spaces (:data:`SPACES`):

- ``"layer"``: the layer given directly — ``cell``, ``hidden_size``,
  ``density_ih``, ``density_hh``, ``router_keep``, ``update_gate`` and, for a
  gated layer, ``initial_update_rate`` and ``target_update_rate``;
- ``"budget"``: the layer given a priori — ``cell``, ``param_budget`` and
  ``hidden_proportion`` (:func:`~sparsernn.core.solve_layer_spec` picks the
  size and the densities), ``update_gate`` and its rates;

each with the PPO knobs rl-zoo3 samples for ``ppo_lstm``
(``rl_zoo3.hyperparams_opt.sample_ppo_params``) but two: a minibatch is
``batch_columns`` whole rollout columns (``batch_size = batch_columns * n_steps``,
as :class:`~sparsernn.agents.SequenceRolloutBuffer` wants whole chunks) and
``n_steps`` is ``2**n_steps_pow`` with ``n_steps_pow`` in 4..10. Any parameter can
be pinned with Optuna's ``PartialFixedSampler`` (``sweep --fix``).
"""
from __future__ import annotations

from typing import Any

import optuna
from torch import nn

#: The name ``SparseRecurrentPPO`` is registered under in rl-zoo3's tables.
ZOO_ALGO = "sparse_ppo"
SPACES = ("layer", "budget")
NET_ARCHS = {"tiny": {"pi": [64], "vf": [64]}, "small": {"pi": [64, 64], "vf": [64, 64]},
             "medium": {"pi": [256, 256], "vf": [256, 256]}}
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
#: Categorical choices of the layer options (a gate's rates are drawn only when a gate is).
CELLS = ("gru", "lstm", "elman")
HIDDEN_SIZES = (16, 32, 64, 128)
DENSITIES_IH = (1.0, 0.5, 0.25)
DENSITIES_HH = (1.0, 0.5, 0.25, 0.1)
ROUTER_KEEPS = (None, 0.5, 0.25, 0.1)
UPDATE_GATES = (None, "rhythm", "event")
UPDATE_RATES = (1.0, 0.5, 0.3, 0.1)
PARAM_BUDGETS = (1024, 4096, 16384)
BATCH_COLUMNS = (1, 2, 4, 8)
#: Every raw parameter :func:`suggest` may draw (the keys of :func:`convert`'s input).
PPO_PARAMS = ("n_steps_pow", "batch_columns", "one_minus_gamma", "one_minus_gae_lambda", "learning_rate",
              "ent_coef", "clip_range", "n_epochs", "max_grad_norm", "net_arch", "activation_fn",
              "enable_critic_lstm")
LAYER_PARAMS = ("cell", "hidden_size", "density_ih", "density_hh", "router_keep", "param_budget",
                "hidden_proportion", "update_gate", "initial_update_rate", "target_update_rate")


def check_space(space: str) -> str:
    """``space`` if it names a search space, else ``ValueError`` naming the argument."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {list(SPACES)}; got {space!r}")
    return space


def suggest(trial: optuna.Trial, n_envs: int, space: str = "layer") -> dict[str, Any]:
    """Ask ``trial`` for one sample of ``space``; returns the raw parameters (as Optuna stores them).

    ``n_envs`` bounds ``batch_columns`` (a minibatch holds at most every column of the rollout).
    """
    check_space(space)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1; got {n_envs!r}")
    raw: dict[str, Any] = {
        "n_steps_pow": trial.suggest_int("n_steps_pow", 4, 10),
        "batch_columns": trial.suggest_categorical("batch_columns", [c for c in BATCH_COLUMNS if c <= n_envs]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 0.0001, 0.1, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.2, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.003, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
        "enable_critic_lstm": trial.suggest_categorical("enable_critic_lstm", [True, False]),
        "cell": trial.suggest_categorical("cell", list(CELLS)),
    }
    if space == "layer":
        raw["hidden_size"] = trial.suggest_categorical("hidden_size", list(HIDDEN_SIZES))
        raw["density_ih"] = trial.suggest_categorical("density_ih", list(DENSITIES_IH))
        raw["density_hh"] = trial.suggest_categorical("density_hh", list(DENSITIES_HH))
        raw["router_keep"] = trial.suggest_categorical("router_keep", list(ROUTER_KEEPS))
    else:
        raw["param_budget"] = trial.suggest_categorical("param_budget", list(PARAM_BUDGETS))
        raw["hidden_proportion"] = trial.suggest_float("hidden_proportion", 0.1, 0.9)
    raw["update_gate"] = trial.suggest_categorical("update_gate", list(UPDATE_GATES))
    if raw["update_gate"] is not None:
        raw["initial_update_rate"] = trial.suggest_categorical("initial_update_rate", list(UPDATE_RATES))
        raw["target_update_rate"] = trial.suggest_categorical("target_update_rate", list(UPDATE_RATES))
    trial.set_user_attr("n_steps", 2 ** raw["n_steps_pow"])
    trial.set_user_attr("batch_size", raw["batch_columns"] * 2 ** raw["n_steps_pow"])
    return raw


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw parameters (:func:`suggest`'s, or a stored trial's ``params``) -> the model's keyword arguments.

    Returns ``{"policy_kwargs": {...}, "n_steps": ..., "batch_size": ..., "gamma": ..., ...}``,
    complete: rl-zoo3 replaces its YAML's ``policy_kwargs`` with this one, not merges them.
    """
    unknown = sorted(set(raw) - set(PPO_PARAMS) - set(LAYER_PARAMS))
    if unknown:
        raise ValueError(f"raw parameters {unknown} are not in the search space; allowed: "
                         f"{sorted(PPO_PARAMS + LAYER_PARAMS)}")
    if raw.get("net_arch", "tiny") not in NET_ARCHS:
        raise ValueError(f"net_arch must be one of {list(NET_ARCHS)}; got {raw['net_arch']!r}")
    if raw.get("activation_fn", "tanh") not in ACTIVATIONS:
        raise ValueError(f"activation_fn must be one of {list(ACTIVATIONS)}; got {raw['activation_fn']!r}")
    n_steps = 2 ** int(raw["n_steps_pow"])
    out: dict[str, Any] = {
        "n_steps": n_steps,
        "batch_size": int(raw["batch_columns"]) * n_steps,
        "gamma": 1.0 - raw["one_minus_gamma"],
        "gae_lambda": 1.0 - raw["one_minus_gae_lambda"],
        **{key: raw[key] for key in ("learning_rate", "ent_coef", "clip_range", "n_epochs", "max_grad_norm")
           if key in raw},
    }
    policy: dict[str, Any] = {"ortho_init": False, "net_arch": NET_ARCHS[raw.get("net_arch", "tiny")],
                              "activation_fn": ACTIVATIONS[raw.get("activation_fn", "tanh")],
                              "enable_critic_lstm": bool(raw.get("enable_critic_lstm", True))}
    for key in ("cell", "density_ih", "density_hh", "router_keep", "update_gate", "initial_update_rate",
                "target_update_rate"):
        if raw.get(key) is not None:
            policy[key] = raw[key]
    if raw.get("param_budget") is not None:
        policy.update(hidden_size=None, param_budget=int(raw["param_budget"]),
                      hidden_proportion=float(raw["hidden_proportion"]))
    else:
        policy["hidden_size"] = int(raw.get("hidden_size", 64))
    out["policy_kwargs"] = policy
    return out


def sample_sparse_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int,
                             additional_args: dict[str, Any] | None = None, space: str = "layer") -> dict[str, Any]:
    """rl-zoo3's sampler signature (``HYPERPARAMS_SAMPLER``): ``convert(suggest(trial, n_envs, space))``."""
    return convert(suggest(trial, n_envs, space))


def sample_sparse_ppo_budget_params(trial: optuna.Trial, n_actions: int, n_envs: int,
                                    additional_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """As :func:`sample_sparse_ppo_params`, the layer given by ``(param_budget, hidden_proportion)``."""
    return convert(suggest(trial, n_envs, "budget"))
