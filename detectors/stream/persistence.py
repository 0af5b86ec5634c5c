"""Saving and loading detectors and live streams — tensors and JSON, never pickled code.

File format
-----------
One file written by ``torch.save`` holding a plain dict::

    {"format": "sparsernn.detectors/stream", "version": 3 (4 with online learning, 5 with a window novelty),
     "config": "<JSON text>",
     "tensors": {"<name>": tensor, ...}}

It is read back with ``torch.load(path, weights_only=True)``, which accepts
only tensors and plain containers, so loading a file runs no code from it.

Integrity (version 3): the payload also holds ``"sha256"``, the SHA-256 of the
config text and of every tensor (name, dtype, shape and bytes, in name order).
A load either restores exactly what was saved or raises
:class:`CorruptSaveError` (a ``ValueError``) naming the file and what is
wrong: not readable as such a file (empty, truncated, not a torch file), bad
JSON, a missing tensor, a checksum that does not match, an array of the wrong
shape or dtype, or NaN / inf where the state must be finite. Saving writes a
temporary file in the same directory, flushes it to disk and renames it over
the target (``os.replace``), so a crash mid-save leaves the previous file
intact and no temporary file behind. Version 2 files (no checksum) are still
read, with every other check.

``config`` (JSON) holds:

- ``kind``: ``"detector"``, ``"StreamScorer"`` or the class of the outermost
  wrapper (``"AnomalyLikelihood"``, ``"SpatialAnomaly"``, ...);
- ``detector``: ``class``, ``params`` (``get_params()``), ``n_channels``,
  ``feature_names``;
- ``scorer``: ``normalizer_halflife``, ``min_scale``, ``stream_ids``, ``dict_keys``, ``learn``;
- ``wrappers``: the chain of wrappers around the scorer, innermost first, each
  ``{"class": name, "settings": {constructor keyword arguments}}``;
- ``versions``: of sparsernn, torch and numpy that wrote the file.

``tensors`` holds ``model.<name>`` (the forecaster's ``state_dict``: weights,
masks), ``detector.<attr>`` (``center_``, ``scale_``, ``decision_scores_``,
``labels_``, ``threshold_``, ``training_losses_``), ``scorer.<attr>``
(``StreamScorer.STATE``: recurrent ``state``, ``forecast_mean``,
``forecast_var``, ``norm_mean``, ``norm_var``, ``count``, ``last_time``; with the
detector's ``surprise_windows`` also ``scorer.window_z``, ``scorer.window_ok``, ``scorer.window_var``
and ``scorer.window_seen``, each stream's last residuals and the windows' calibration: a reader without that detector parameter refuses such a file; with
online learning also ``scorer.learn.weight.<parameter>``, ``scorer.learn.adam_m.<parameter>``,
``scorer.learn.adam_v.<parameter>``, ``scorer.learn.adam_step``, ``scorer.learn.ring_u``,
``scorer.learn.ring_ok``, ``scorer.learn.checkpoint``: each stream's weights, Adam state and
window buffers, and the config's ``scorer.learn`` holds the
:class:`~sparsernn.detectors.stream.online.OnlineLearning` settings; such a file has
version 4, so a reader of version 3 refuses it) and ``wrapper<i>.<attr>``, the
per-stream arrays of the i-th wrapper (its ``STATE``: e.g. the likelihood's
``recent``, ``history``, ``seen``, ``mean``, ``std``, ``last_q``). Every array
keeps its dtype, so a loaded stream continues with bit-identical scores.
Version 1 files (the earlier likelihood) are refused with an error.

A chain holding a :class:`~sparsernn.detectors.stream.novelty.WindowNovelty` is
written as version 5: its ``bank`` of stored embeddings is float32 since then
(float64 before), so a reader of version 4 refuses the file instead of
rejecting the bank's dtype. A version 2-4 file's float64 bank is read and
rounded to float32 (:data:`LEGACY_DTYPES`); the stream then continues as one
whose embeddings were stored as float32, not bit-identically with the
version that wrote it.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ...core.files import atomic_write
from .scorer import StreamScorer
from .wrappers import WRAPPERS, StreamWrapper

FORMAT = "sparsernn.detectors/stream"
VERSION = 3
LEARNING_VERSION = 4
NOVELTY_VERSION = 5
READABLE = (2, 3, 4, 5)
LEGACY_DTYPES = {("WindowNovelty", "bank"): (NOVELTY_VERSION, np.float64)}
"""(wrapper class, array) -> (the file version from which its dtype is today's, the dtype before):
such an array of an older file is read and cast to today's dtype."""
DETECTOR_ARRAYS = ("center_", "scale_", "decision_scores_", "labels_", "threshold_", "training_losses_")


class CorruptSaveError(ValueError):
    """A detector / stream file that cannot be restored exactly: its message names the file and what is wrong."""


def _checksum(config_text: str, tensors: dict) -> str:
    digest = hashlib.sha256(config_text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _tensor(tensors: dict, name: str, path) -> torch.Tensor:
    if name not in tensors or not isinstance(tensors[name], torch.Tensor):
        raise CorruptSaveError(f"{path}: the tensor {name!r} is missing")
    return tensors[name]


def _check_array(path, name: str, array: np.ndarray, shape: tuple | None = None, finite: bool = True,
                 dtype=None) -> np.ndarray:
    """``array`` when it has ``shape`` (None entries: any), ``dtype`` and (``finite``) no NaN / inf."""
    if shape is not None and (array.ndim != len(shape)
                              or any(w is not None and a != w for a, w in zip(array.shape, shape))):
        raise CorruptSaveError(f"{path}: {name} has shape {array.shape}; expected {shape} (None: any)")
    if dtype is not None and array.dtype != dtype:
        raise CorruptSaveError(f"{path}: {name} has dtype {array.dtype}; expected {np.dtype(dtype)}")
    if finite and np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise CorruptSaveError(f"{path}: {name} holds NaN or inf")
    return array


def _versions() -> dict:
    try:
        ours = metadata.version("sparsernn")
    except metadata.PackageNotFoundError:  # pragma: no cover
        ours = "unknown"
    return {"sparsernn": ours, "torch": torch.__version__, "numpy": np.__version__}


def _detector_parts(detector) -> tuple[dict, dict]:
    params = detector.get_params(deep=False)
    params["device"] = str(params.get("device", "cpu"))  # a torch.device is written as its name
    config = {"class": type(detector).__name__, "params": params,
              "n_channels": int(detector.n_channels_), "feature_names": detector.feature_names_,
              "feature_names_in": (None if getattr(detector, "feature_names_in_", None) is None
                                   else list(detector.feature_names_in_))}
    tensors = {f"model.{k}": v.detach().clone() for k, v in detector.model_.state_dict().items()}
    for attr in DETECTOR_ARRAYS:
        tensors[f"detector.{attr}"] = torch.from_numpy(np.array(getattr(detector, attr)))
    return config, tensors


def _detector_from(config: dict, tensors: dict, path):
    from ..selective_update import SelectiveUpdateDetector

    if config["class"] != SelectiveUpdateDetector.__name__:
        raise CorruptSaveError(f"{path}: unknown detector class {config['class']!r}")
    params = dict(config["params"])
    if isinstance(params.get("router_keep"), list):
        params["router_keep"] = tuple(params["router_keep"])
    detector = SelectiveUpdateDetector(**params)
    d = detector.n_channels_ = detector.n_features_in_ = config["n_channels"]
    if not isinstance(d, int) or d < 1:
        raise CorruptSaveError(f"{path}: n_channels must be an int >= 1; got {d!r}")
    detector.feature_names_ = config["feature_names"]
    if config.get("feature_names_in") is not None:
        detector.feature_names_in_ = np.asarray(config["feature_names_in"], dtype=object)
    shapes = {"center_": (d,), "scale_": (d,), "threshold_": (), "decision_scores_": (None,),
              "labels_": (None,), "training_losses_": (None,)}
    for attr in DETECTOR_ARRAYS:
        value = _check_array(path, f"detector.{attr}", _tensor(tensors, f"detector.{attr}", path).numpy(),
                             shapes[attr], finite=attr != "training_losses_")
        setattr(detector, attr, value.item() if value.ndim == 0 else value)
    detector.training_losses_ = list(detector.training_losses_)
    detector.model_ = detector._build_model(detector.n_channels_)
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    for name, expected in detector.model_.state_dict().items():
        got = _tensor(tensors, prefix + name, path)
        _check_array(path, prefix + name, got.numpy(), tuple(expected.shape), dtype=expected.numpy().dtype)
    detector.model_.load_state_dict(state)
    detector.model_.eval()
    return detector


def _write(path, kind: str, config: dict, tensors: dict, version: int = VERSION) -> None:
    """Write atomically (:func:`~sparsernn.core.files.atomic_write`)."""
    config_text = json.dumps({"kind": kind, **config, "versions": _versions()})
    payload = {"format": FORMAT, "version": version, "config": config_text, "tensors": tensors,
               "sha256": _checksum(config_text, tensors)}
    with atomic_write(path) as file:
        torch.save(payload, file)


def _read(path) -> tuple[dict, dict, int]:
    """The config, tensors and format version of a file; :class:`CorruptSaveError` for anything but a
    sound file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no detector/stream file at {path}")
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:  # truncated / not a zip / unpickling refused: all mean "not a sound file"
        raise CorruptSaveError(f"{path} is not a readable sparsernn detector/stream file "
                               f"({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CorruptSaveError(f"{path} is not a sparsernn detector/stream file (format {FORMAT!r})")
    if payload.get("version") not in READABLE:
        raise CorruptSaveError(f"{path} has format version {payload.get('version')!r}; this version reads "
                               f"{list(READABLE)}")
    text, tensors = payload.get("config"), payload.get("tensors")
    if not isinstance(text, str) or not isinstance(tensors, dict) \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise CorruptSaveError(f"{path}: the config text or the tensors are missing or malformed")
    if payload["version"] >= 3 and payload.get("sha256") != _checksum(text, tensors):
        raise CorruptSaveError(f"{path}: the checksum does not match its contents (the file was changed or "
                               f"damaged after it was written)")
    try:
        config = json.loads(text)
    except ValueError as error:
        raise CorruptSaveError(f"{path}: its config is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise CorruptSaveError(f"{path}: its config is not a JSON object")
    return config, tensors, payload["version"]


def _restoring(path, build):
    """``build()``, with a missing config entry or a rejected value reported as :class:`CorruptSaveError`."""
    try:
        return build()
    except CorruptSaveError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CorruptSaveError(f"{path}: cannot be restored ({type(error).__name__}: {error})") from error


def save_detector(detector, path) -> None:
    """Write a fitted :class:`SelectiveUpdateDetector` to ``path``."""
    config, tensors = _detector_parts(detector)
    _write(path, "detector", {"detector": config}, tensors)


def load_detector(path):
    """Read a detector written by :func:`save_detector` (or the detector of a stream file)."""
    config, tensors, _ = _read(path)
    return _restoring(path, lambda: _detector_from(config["detector"], tensors, path))


VARIABLE_WIDTH = {"values"}
"""Wrapper arrays whose non-stream axes may differ from a fresh stream's (the seasonal ring widens)."""


def _chain(stream) -> tuple:
    """The scorer at the heart of ``stream`` and the wrappers around it, innermost first."""
    wrappers = []
    while isinstance(stream, StreamWrapper):
        wrappers.append(stream)
        stream = stream.inner
    if not isinstance(stream, StreamScorer):
        raise TypeError(f"stream must be a StreamScorer or a chain of StreamWrappers around one; "
                        f"got {type(stream).__name__} at its heart")
    return stream, wrappers[::-1]


def save_stream(stream, path) -> None:
    """Write a :class:`StreamScorer`, or any chain of wrappers around one, to ``path``."""
    scorer, chain = _chain(stream)
    det_config, tensors = _detector_parts(scorer.detector)
    config = {"detector": det_config,
              "scorer": {"normalizer_halflife": scorer.normalizer_halflife, "min_scale": scorer.min_scale,
                         "stream_ids": scorer.stream_ids, "dict_keys": scorer.dict_keys,
                         "learn": None if scorer.learn is None else scorer.learn.settings()},
              "wrappers": []}
    for attr, array in scorer.state_arrays().items():
        tensors[f"scorer.{attr}"] = torch.from_numpy(array)
    for i, wrapper in enumerate(chain):
        config["wrappers"].append({"class": type(wrapper).__name__, "settings": wrapper.settings()})
        for attr, array in wrapper.state_arrays().items():
            tensors[f"wrapper{i}.{attr}"] = torch.from_numpy(np.ascontiguousarray(array))
    # a learning scorer's file is version 4, so a reader of version 3 refuses it rather than dropping the
    # learned weights; without learning the file is the same version 3 as before; a chain with a window
    # novelty (float32 bank) is version 5
    version = VERSION if scorer.learn is None else LEARNING_VERSION
    if any(cls == type(wrapper).__name__ for wrapper in chain for cls, _ in LEGACY_DTYPES):
        version = NOVELTY_VERSION
    _write(path, type(stream).__name__, config, tensors, version)


def load_stream(path, expect: type | None = None):
    """Read a stream written by :func:`save_stream`; ``expect`` checks the outermost class.

    Wrappers are found by class name in :data:`~sparsernn.detectors.stream.wrappers.WRAPPERS`
    (every :class:`StreamWrapper` subclass defined so far).
    """
    config, tensors, version = _read(path)
    kinds = {"StreamScorer": StreamScorer, **WRAPPERS}
    if config.get("kind") not in kinds:
        raise ValueError(f"{path} holds a {config.get('kind')!r}, not a stream")
    if expect is not None and kinds[config["kind"]] is not expect:
        raise ValueError(f"{path} holds a {config['kind']}, not a {expect.__name__}")
    return _restoring(path, lambda: _stream_from(config, tensors, path, version))


def _stream_from(config: dict, tensors: dict, path, version: int):
    detector = _detector_from(config["detector"], tensors, path)
    settings = config["scorer"]
    stream = StreamScorer(detector, settings["normalizer_halflife"], settings["min_scale"],
                          learn=settings.get("learn"))
    ids = list(settings["stream_ids"])
    if len(set(ids)) != len(ids) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise CorruptSaveError(f"{path}: stream_ids must be distinct str / int ids; got {ids!r}")
    stream.restore_streams(ids)
    if settings.get("dict_keys") is not None:
        stream.dict_keys = list(settings["dict_keys"])
    arrays = {}
    for attr, like in stream.state_arrays().items():  # fresh state: the shapes and dtypes
        array = _tensor(tensors, f"scorer.{attr}", path).numpy().copy()
        arrays[attr] = _check_array(path, f"scorer.{attr}", array, like.shape, dtype=like.dtype)
    stream.load_state_arrays(arrays)
    n = len(ids)
    for i, part in enumerate(config["wrappers"]):
        cls = WRAPPERS.get(part["class"])
        if cls is None:
            raise CorruptSaveError(f"{path}: unknown wrapper {part['class']!r} (known: {sorted(WRAPPERS)})")
        stream = cls(stream, **part["settings"])
        fresh = cls(stream.inner, **part["settings"])
        # the arrays of n fresh streams: the shapes, dtypes and where NaN may be
        fresh_arrays = fresh.state_arrays()
        arrays = {}
        for attr in cls.STATE:
            array, like = _tensor(tensors, f"wrapper{i}.{attr}", path).numpy(), fresh_arrays[attr]
            since, before = LEGACY_DTYPES.get((part["class"], attr), (0, None))
            if version < since and array.dtype == before:  # an older file's layout: cast to today's
                array = array.astype(like.dtype)
            shape = (n,) + (None,) * (like.ndim - 1) if attr in VARIABLE_WIDTH else like.shape
            _check_array(path, f"wrapper{i}.{attr}", array, shape, dtype=like.dtype,
                         finite=bool(np.isfinite(like).all()) if like.dtype.kind == "f" else True)
            if array.dtype.kind == "f" and np.isinf(array).any():
                raise CorruptSaveError(f"{path}: wrapper{i}.{attr} holds inf")
            arrays[attr] = array
        stream.load_state_arrays(arrays)
    return stream
