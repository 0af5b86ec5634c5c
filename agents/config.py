"""YAML training configurations: loading, and turning their strings into Python objects.

A configuration file mirrors :func:`~sparsernn.agents.train`'s keyword
arguments; ``policy_kwargs`` and ``ppo_kwargs`` are nested mappings::

    env_id: sparsernn/CartPoleNoVel-v1
    total_timesteps: 100000
    n_envs: 8
    normalize: true
    policy_kwargs: {cell: gru, hidden_size: 64, activation_fn: relu, ortho_init: false,
                    net_arch: {pi: [64], vf: [64]}}
    ppo_kwargs: {n_steps: 32, batch_size: 256, learning_rate: lin_1e-3, clip_range: lin_0.2}

Strings understood: schedules ``lin_<start>`` (linear from ``start`` to 0, as
in the RL Zoo) for ``learning_rate``/``clip_range``/``clip_range_vf``, and
activation names (``relu``, ``tanh``, ``elu``, ``leaky_relu``, ``gelu``,
``silu``) for ``activation_fn``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

#: The configurations shipped with the package (``cartpole_novel.yaml``: the RL Zoo's
#: CartPoleNoVel ppo_lstm settings; ``cue_memory.yaml``: the long-gap recall task).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU,
                                           "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: ``1e3`` and ``1e-3`` are numbers, not strings
    (YAML 1.1, PyYAML's default, needs a dot: ``1.0e3``)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
#: Top-level keys a configuration file may hold (the keyword arguments of ``train``).
CONFIG_KEYS = ("env_id", "total_timesteps", "algo", "policy", "policy_kwargs", "ppo_kwargs", "n_envs",
               "normalize", "seed", "env_kwargs", "tensorboard_log", "save_dir", "checkpoint_freq",
               "eval_freq", "eval_episodes", "eval_env_kwargs", "progress_bar", "device", "verbose")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration; unknown top-level keys are an error.

    ``1e3`` is read as the number 1000.0 (YAML 1.2); :func:`~sparsernn.agents.train` accepts
    floats with an integer value for counts and checks every value before any work.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    with path.open() as handle:
        try:
            config = yaml.load(handle, Loader=ConfigLoader) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping; got {type(config).__name__}")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"config file {str(path)!r} has unknown key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
    return config


def parse_schedule(name: str, value: Any) -> Any:
    """``"lin_0.001"`` -> a linear schedule from 0.001 to 0; numbers and callables pass through."""
    if not isinstance(value, str):
        return value
    if value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            raise ValueError(f"{name}={value!r}: expected 'lin_<number>', e.g. 'lin_1e-3'") from None
        return LinearSchedule(start, 0.0, 1.0)
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a number or 'lin_<number>'") from None


def parse_ppo_kwargs(ppo_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Copy of ``ppo_kwargs`` with schedule strings turned into schedules."""
    out = dict(ppo_kwargs or {})
    for key in SCHEDULE_KEYS:
        if key in out:
            out[key] = parse_schedule(key, out[key])
    return out


def parse_policy_kwargs(policy_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Copy of ``policy_kwargs`` with an activation name turned into its ``nn.Module`` class
    and a ``router_keep`` list into a tuple."""
    out = dict(policy_kwargs or {})
    activation = out.get("activation_fn")
    if isinstance(activation, str):
        if activation.lower() not in ACTIVATIONS:
            raise ValueError(f"activation_fn={activation!r} is not known; allowed: {sorted(ACTIVATIONS)}")
        out["activation_fn"] = ACTIVATIONS[activation.lower()]
    if isinstance(out.get("router_keep"), list):
        out["router_keep"] = tuple(out["router_keep"])
    return out
