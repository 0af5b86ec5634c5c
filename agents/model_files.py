"""Model and normalisation files: atomic writes, checked reads, and a pickle-free ``VecNormalize`` format.

- :func:`save_model` writes ``model.zip`` through a temporary file in the same
  directory and ``os.replace``: a crash mid-save leaves the previous file whole.
- :func:`check_model_file` reads a zip before SB3 does and names the file and
  what is wrong (empty, truncated, not a zip, a member missing or failing its CRC);
  :func:`reading_model` turns the errors SB3 raises from deep inside into the same
  :class:`ModelFileError`.
- The normalisation statistics (``obs_rms``, ``ret_rms``, clip settings, ``gamma``,
  ``epsilon``, ``norm_obs``/``norm_reward``) go to JSON beside the model
  (:func:`normalization_path`), never to a pickle: loading them runs no code.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sparsernn.core.files import atomic_write

NORMALIZATION_FORMAT = "sparsernn.vecnormalize"
NORMALIZATION_VERSION = 1
#: Members every SB3 model zip holds.
MODEL_MEMBERS = ("data", "policy.pth")


class ModelFileError(ValueError):
    """A model or normalisation file that cannot be loaded: the message names the file and what is wrong."""


def normalization_path(model_path: str | os.PathLike) -> Path:
    """Where the normalisation statistics of ``model_path`` live: ``run/model.zip`` -> ``run/model.vecnormalize.json``."""
    return Path(model_path).with_suffix(".vecnormalize.json")


def save_model(model: BaseAlgorithm, path: str | os.PathLike) -> Path:
    """``model.save(path)``, atomically. Returns ``path``."""
    path = Path(path)
    with atomic_write(path) as file:
        model.save(file)
    return path


def check_model_file(path: str | os.PathLike) -> Path:
    """Refuse a missing, empty, truncated or corrupted model zip before SB3 reads it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' is not a file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file '{path}' is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file '{path}' is not a zip archive (truncated, or not saved by model.save)")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in MODEL_MEMBERS if name not in archive.namelist()]
            if missing:
                raise ModelFileError(f"model file '{path}' lacks {missing} (not a complete SB3 model)")
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ModelFileError(f"model file '{path}' is corrupted: {type(error).__name__}: {error}") from error
    if bad is not None:
        raise ModelFileError(f"model file '{path}' is corrupted: member {bad!r} fails its CRC check")
    return path


@contextlib.contextmanager
def reading_model(path: str | os.PathLike) -> Iterator[None]:
    """Turn what SB3 raises on a damaged file (``EOFError``, ``BadZipFile``, bad JSON, bad pickle) into
    a :class:`ModelFileError` naming ``path``; other errors (e.g. a space mismatch) pass through."""
    try:
        yield
    except (EOFError, zipfile.BadZipFile, zlib.error, json.JSONDecodeError, pickle.UnpicklingError, KeyError,
            UnicodeDecodeError, RuntimeError) as error:
        raise ModelFileError(f"model file '{path}' cannot be loaded: {type(error).__name__}: {error}") from error


def check_spaces(model: BaseAlgorithm, env: VecEnv, env_id: str) -> None:
    """Refuse an env whose observation or action space differs from the model's, naming both."""
    for kind, ours, theirs in (("observation", model.observation_space, env.observation_space),
                               ("action", model.action_space, env.action_space)):
        if ours != theirs:
            raise ValueError(f"env {env_id!r} does not fit the model: its {kind} space is {theirs}, "
                             f"the model's is {ours}")


# --- normalisation statistics -------------------------------------------------------------------------------------

def _rms_to_json(rms: RunningMeanStd) -> dict[str, Any]:
    return {"mean": np.asarray(rms.mean, dtype=np.float64).tolist(),
            "var": np.asarray(rms.var, dtype=np.float64).tolist(), "count": float(rms.count)}


def save_normalization(venv: VecNormalize, path: str | os.PathLike) -> Path:
    """Write ``venv``'s statistics and settings to JSON at ``path``, atomically."""
    obs_rms = venv.obs_rms
    data = {
        "format": NORMALIZATION_FORMAT, "version": NORMALIZATION_VERSION,
        "norm_obs": bool(venv.norm_obs), "norm_reward": bool(venv.norm_reward),
        "norm_obs_keys": None if venv.norm_obs_keys is None else list(venv.norm_obs_keys),
        "clip_obs": float(venv.clip_obs), "clip_reward": float(venv.clip_reward),
        "gamma": float(venv.gamma), "epsilon": float(venv.epsilon),
        "obs_rms": ({key: _rms_to_json(rms) for key, rms in obs_rms.items()} if isinstance(obs_rms, dict)
                    else _rms_to_json(obs_rms)),
        "ret_rms": _rms_to_json(venv.ret_rms),
    }
    path = Path(path)
    with atomic_write(path) as file:
        file.write(json.dumps(data, indent=1, allow_nan=False).encode())
    return path


def _rms_from_json(path: Path, name: str, data: Any, shape: tuple[int, ...]) -> RunningMeanStd:
    if not isinstance(data, dict) or set(data) != {"mean", "var", "count"}:
        raise ModelFileError(f"normalisation file '{path}': {name} must hold mean, var and count; got {data!r:.80}")
    try:
        mean, var = np.asarray(data["mean"], dtype=np.float64), np.asarray(data["var"], dtype=np.float64)
        count = float(data["count"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"normalisation file '{path}': {name} is not numeric: {error}") from None
    if mean.shape != shape or var.shape != shape:
        raise ModelFileError(f"normalisation file '{path}': {name} has shapes mean {mean.shape}, var {var.shape}; "
                             f"the env needs {shape}")
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var >= 0).all()):
        raise ModelFileError(f"normalisation file '{path}': {name} has a non-finite mean or a negative/non-finite var")
    if not (math.isfinite(count) and count > 0):
        raise ModelFileError(f"normalisation file '{path}': {name}.count must be finite and > 0; got {count}")
    rms = RunningMeanStd(shape=shape)
    rms.mean, rms.var, rms.count = mean, var, count
    return rms


def load_normalization(path: str | os.PathLike, venv: VecEnv, training: bool = False) -> VecNormalize:
    """``venv`` wrapped in a ``VecNormalize`` restored from a :func:`save_normalization` file.

    ``training=False`` (evaluation) freezes the statistics and returns raw rewards.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"normalisation file '{path}' does not exist")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"normalisation file '{path}' is not valid JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != NORMALIZATION_FORMAT:
        raise ModelFileError(f"normalisation file '{path}' is not a {NORMALIZATION_FORMAT} file")
    if data.get("version") != NORMALIZATION_VERSION:
        raise ModelFileError(f"normalisation file '{path}' has version {data.get('version')!r}; "
                             f"this code reads version {NORMALIZATION_VERSION}")
    try:
        settings = {key: bool(data[key]) for key in ("norm_obs", "norm_reward")}
        settings.update({key: float(data[key]) for key in ("clip_obs", "clip_reward", "gamma", "epsilon")})
        keys = data["norm_obs_keys"]
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"normalisation file '{path}' lacks or mangles a setting: {error!r}") from None
    if not all(math.isfinite(settings[key]) and settings[key] > 0 for key in ("clip_obs", "clip_reward", "epsilon")):
        raise ModelFileError(f"normalisation file '{path}': clip_obs, clip_reward and epsilon must be finite and > 0")
    try:
        normalized = VecNormalize(venv, training=training, norm_obs_keys=keys, **settings)
    except (ValueError, TypeError, KeyError, AssertionError) as error:
        raise ModelFileError(f"normalisation file '{path}' does not fit the env: {error}") from None
    if isinstance(normalized.obs_rms, dict):
        obs = data["obs_rms"] if isinstance(data["obs_rms"], dict) else {}
        if set(obs) != set(normalized.obs_rms):
            raise ModelFileError(f"normalisation file '{path}': obs_rms keys {sorted(obs)} differ from the env's "
                                 f"{sorted(normalized.obs_rms)}")
        obs_space = venv.observation_space  # a spaces.Dict: VecNormalize made a dict of statistics
        normalized.obs_rms = {key: _rms_from_json(path, f"obs_rms[{key!r}]", obs[key], obs_space[key].shape)
                              for key in obs}
    else:
        normalized.obs_rms = _rms_from_json(path, "obs_rms", data["obs_rms"], venv.observation_space.shape)
    normalized.ret_rms = _rms_from_json(path, "ret_rms", data["ret_rms"], ())
    if not training:
        normalized.norm_reward = False
    return normalized


class AtomicCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` that writes ``<prefix>_<steps>_steps.zip`` atomically and the
    normalisation statistics (if any) as JSON beside it (:func:`normalization_path`), not as a pickle."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = save_model(self.model, self._checkpoint_path(extension="zip"))
            venv = self.model.get_vec_normalize_env()
            if venv is not None:
                save_normalization(venv, normalization_path(path))
            if self.verbose >= 2:
                print(f"Saving model checkpoint to {path}")
        return True
