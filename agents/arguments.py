"""Checks of ``train``'s and ``evaluate``'s arguments, run before any env or model is built.

Counts accept Python and NumPy integers and floats with an integer value
(``1e3`` from a YAML file); anything else is a ``TypeError`` or ``ValueError``
naming the argument, the value and what is allowed.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .model_files import check_model_file

#: Seeds go to ``random``, NumPy and torch; NumPy takes 0 <= seed < 2**32.
SEED_LIMIT = 2**32
#: ``ppo_kwargs`` entries that are counts (>= 1).
PPO_COUNTS = ("n_steps", "batch_size", "n_epochs", "chunk_length")
MODEL_FILE = "model.zip"


def as_count(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an ``int >= minimum``; integral floats (``1e3``) and NumPy scalars are accepted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a whole number >= {minimum}; got {value!r} ({type(value).__name__})")
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        number = int(float(value))
    else:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {value!r}")
    if number < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {value!r}")
    return number


def as_seed(name: str, value: Any) -> int | None:
    """``None`` or an int in ``[0, 2**32)``."""
    if value is None:
        return None
    seed = as_count(name, value, 0)
    if seed >= SEED_LIMIT:
        raise ValueError(f"{name} must be in [0, 2**32) (NumPy's seed range); got {value!r}")
    return seed


def derived_seed(seed: int | None, offset: int) -> int | None:
    """The seed of a helper env (evaluation): ``seed + offset`` wrapped into the seed range."""
    return None if seed is None else (seed + offset) % SEED_LIMIT


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a mapping or None; got {type(value).__name__}")
    return dict(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_train_arguments(call: dict[str, Any], algos: dict[str, Any]) -> dict[str, Any]:
    """``train``'s arguments (``call``: every parameter by name) checked and normalised (ints made ``int``,
    ``save_dir``/``resume`` made ``Path``); raises before any work."""
    env_id, algo, ppo_kwargs, normalize = call["env_id"], call["algo"], call["ppo_kwargs"], call["normalize"]
    device, save_dir, resume = call["device"], call["save_dir"], call["resume"]
    if not isinstance(env_id, str) or not env_id:
        raise TypeError(f"env_id must be a non-empty string; got {env_id!r}")
    if algo not in algos:
        raise ValueError(f"algo must be one of {list(algos)}; got {algo!r}")
    ppo_kwargs = _mapping("ppo_kwargs", ppo_kwargs)
    for key in PPO_COUNTS:
        if ppo_kwargs.get(key) is not None:
            ppo_kwargs[key] = as_count(f"ppo_kwargs[{key!r}]", ppo_kwargs[key], 1)
    if not isinstance(normalize, (bool, dict)):
        raise TypeError(f"normalize must be a bool or VecNormalize keyword arguments; got {normalize!r}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'auto', 'cpu' or 'cuda'; got {device!r}")
    checked = dict(call)
    checked.update(
        total_timesteps=as_count("total_timesteps", call["total_timesteps"], 1),
        policy_kwargs=_mapping("policy_kwargs", call["policy_kwargs"]), ppo_kwargs=ppo_kwargs,
        n_envs=as_count("n_envs", call["n_envs"], 1), seed=as_seed("seed", call["seed"]),
        env_kwargs=_mapping("env_kwargs", call["env_kwargs"]),
        eval_env_kwargs=None if call["eval_env_kwargs"] is None else _mapping("eval_env_kwargs",
                                                                              call["eval_env_kwargs"]),
        checkpoint_freq=as_count("checkpoint_freq", call["checkpoint_freq"], 0),
        eval_freq=as_count("eval_freq", call["eval_freq"], 0),
        eval_episodes=as_count("eval_episodes", call["eval_episodes"], 0),
        progress_bar=_flag("progress_bar", call["progress_bar"]), verbose=as_count("verbose", call["verbose"], 0),
        overwrite=_flag("overwrite", call["overwrite"]))
    if call["tensorboard_log"] is not None and not isinstance(call["tensorboard_log"], (str, os.PathLike)):
        raise TypeError(f"tensorboard_log must be a path or None; got {call['tensorboard_log']!r}")
    for name in ("checkpoint_freq", "eval_freq"):
        if checked[name] and save_dir is None:
            raise ValueError(f"{name}={checked[name]} needs save_dir to write to")
    if save_dir is not None:
        if not isinstance(save_dir, (str, os.PathLike)):
            raise TypeError(f"save_dir must be a path; got {save_dir!r}")
        save_dir = Path(save_dir)
        if save_dir.exists() and not save_dir.is_dir():
            raise ValueError(f"save_dir '{save_dir}' exists and is not a directory")
        if (save_dir / MODEL_FILE).exists() and not checked["overwrite"]:
            raise FileExistsError(f"save_dir '{save_dir}' already holds {MODEL_FILE}; pass overwrite=True "
                                  "(--overwrite) to replace it, or resume=PATH (--resume) to continue from it")
    checked["save_dir"] = save_dir
    if resume is not None:
        if not isinstance(resume, (str, os.PathLike)):
            raise TypeError(f"resume must be the path of a saved model; got {resume!r}")
        checked["resume"] = check_model_file(resume)
    else:
        checked["resume"] = None
    return checked
