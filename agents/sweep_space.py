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
be pinned with Optuna's ``PartialFixedSampler`` (``sweep --fix``), and a sweep can draw a few parameters
only (``suggest(..., params=...)``, ``sweep --params``), the config's values standing for the rest.
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


def suggest(trial: optuna.Trial, n_envs: int, space: str = "layer",
            params: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """Ask ``trial`` for one sample of ``space``; returns the raw parameters (as Optuna stores them).

    ``n_envs`` bounds ``batch_columns`` (a minibatch holds at most every column of the rollout).
    ``params`` (default: all of ``space``) restricts what is drawn; the rest is left out of the sample,
    so a config's values stand (``sweep --params``). A gate's rates are drawn when a gate is.
    """
    check_space(space)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1; got {n_envs!r}")
    names = space_params(space)
    if params is not None:
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"params {unknown} are not parameters of space {space!r}: {list(names)}")
        names = tuple(name for name in names if name in params)
    draws: dict[str, Any] = {
        "n_steps_pow": lambda: trial.suggest_int("n_steps_pow", 4, 10),
        "batch_columns": lambda: trial.suggest_categorical("batch_columns", [c for c in BATCH_COLUMNS if c <= n_envs]),
        "one_minus_gamma": lambda: trial.suggest_float("one_minus_gamma", 0.0001, 0.1, log=True),
        "one_minus_gae_lambda": lambda: trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.2, log=True),
        "learning_rate": lambda: trial.suggest_float("learning_rate", 1e-5, 0.003, log=True),
        "ent_coef": lambda: trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "clip_range": lambda: trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3, 0.4]),
        "n_epochs": lambda: trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "max_grad_norm": lambda: trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "net_arch": lambda: trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": lambda: trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
        "enable_critic_lstm": lambda: trial.suggest_categorical("enable_critic_lstm", [True, False]),
        "cell": lambda: trial.suggest_categorical("cell", list(CELLS)),
        "hidden_size": lambda: trial.suggest_categorical("hidden_size", list(HIDDEN_SIZES)),
        "density_ih": lambda: trial.suggest_categorical("density_ih", list(DENSITIES_IH)),
        "density_hh": lambda: trial.suggest_categorical("density_hh", list(DENSITIES_HH)),
        "router_keep": lambda: trial.suggest_categorical("router_keep", list(ROUTER_KEEPS)),
        "param_budget": lambda: trial.suggest_categorical("param_budget", list(PARAM_BUDGETS)),
        "hidden_proportion": lambda: trial.suggest_float("hidden_proportion", 0.1, 0.9),
        "update_gate": lambda: trial.suggest_categorical("update_gate", list(UPDATE_GATES)),
        "initial_update_rate": lambda: trial.suggest_categorical("initial_update_rate", list(UPDATE_RATES)),
        "target_update_rate": lambda: trial.suggest_categorical("target_update_rate", list(UPDATE_RATES)),
    }
    raw: dict[str, Any] = {}
    for name in names:
        if name in ("initial_update_rate", "target_update_rate") and raw.get("update_gate", "") is None:
            continue  # no gate drawn: no rates
        raw[name] = draws[name]()
    if "n_steps_pow" in raw:
        trial.set_user_attr("n_steps", 2 ** raw["n_steps_pow"])
        if "batch_columns" in raw:
            trial.set_user_attr("batch_size", raw["batch_columns"] * 2 ** raw["n_steps_pow"])
    return raw


def space_params(space: str) -> tuple[str, ...]:
    """The raw parameters ``space`` draws, in drawing order."""
    check_space(space)
    layer = ("hidden_size", "density_ih", "density_hh", "router_keep") if space == "layer" \
        else ("param_budget", "hidden_proportion")
    return PPO_PARAMS + ("cell",) + layer + ("update_gate", "initial_update_rate", "target_update_rate")


def convert(raw: dict[str, Any]) -> dict[str, Any]:
    """Raw parameters (:func:`suggest`'s, or a stored trial's ``params``) -> the model's keyword arguments.

    Returns ``{"policy_kwargs": {...}, "n_steps": 64, "batch_size": ..., "gamma": ..., ...}`` with what
    ``raw`` holds. rl-zoo3 replaces its YAML's ``policy_kwargs`` with this one, not merges them; our
    sweep merges it over the config's.
    """
    unknown = sorted(set(raw) - set(PPO_PARAMS) - set(LAYER_PARAMS))
    if unknown:
        raise ValueError(f"raw parameters {unknown} are not in the search space; allowed: "
                         f"{sorted(PPO_PARAMS + LAYER_PARAMS)}")
    if "batch_columns" in raw and "n_steps_pow" not in raw:
        raise ValueError("batch_columns needs n_steps_pow (batch_size = batch_columns * 2**n_steps_pow)")
    if ("param_budget" in raw) != ("hidden_proportion" in raw):
        raise ValueError("param_budget and hidden_proportion go together; fix or draw both")
    if raw.get("net_arch", "tiny") not in NET_ARCHS:
        raise ValueError(f"net_arch must be one of {list(NET_ARCHS)}; got {raw['net_arch']!r}")
    if raw.get("activation_fn", "tanh") not in ACTIVATIONS:
        raise ValueError(f"activation_fn must be one of {list(ACTIVATIONS)}; got {raw['activation_fn']!r}")
    out: dict[str, Any] = {key: raw[key] for key in ("learning_rate", "ent_coef", "clip_range", "n_epochs",
                                                     "max_grad_norm") if key in raw}
    if "n_steps_pow" in raw:
        out["n_steps"] = 2 ** int(raw["n_steps_pow"])
        if "batch_columns" in raw:
            out["batch_size"] = int(raw["batch_columns"]) * out["n_steps"]
    for key in ("gamma", "gae_lambda"):
        if f"one_minus_{key}" in raw:
            out[key] = 1.0 - raw[f"one_minus_{key}"]
    policy: dict[str, Any] = {}
    if "net_arch" in raw:
        policy["net_arch"] = NET_ARCHS[raw["net_arch"]]
    if "activation_fn" in raw:
        policy["activation_fn"] = ACTIVATIONS[raw["activation_fn"]]
    if "enable_critic_lstm" in raw:
        policy["enable_critic_lstm"] = bool(raw["enable_critic_lstm"])
    for key in ("cell", "hidden_size", "density_ih", "density_hh", "router_keep", "update_gate",
                "initial_update_rate", "target_update_rate"):
        if key in raw:
            policy[key] = raw[key]
    if "param_budget" in raw:
        policy.update(hidden_size=None, param_budget=int(raw["param_budget"]),
                      hidden_proportion=float(raw["hidden_proportion"]))
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
