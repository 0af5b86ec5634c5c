"""Saving and loading detectors and live streams — tensors and JSON, never pickled code.

File format
-----------
One file written by ``torch.save`` holding a plain dict::

    {"format": "sparsernn.detectors/stream", "version": 1,
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
- ``scorer``: ``normalizer_halflife``, ``min_scale``, ``stream_ids``;
- ``wrappers``: the chain of wrappers around the scorer, innermost first, each
  ``{"class": name, "settings": {constructor keyword arguments}}``;
- ``versions``: of sparsernn, torch and numpy that wrote the file.

``tensors`` holds ``model.<name>`` (the forecaster's ``state_dict``: weights,
masks), ``detector.<attr>`` (``center_``, ``scale_``, ``decision_scores_``,
``labels_``, ``threshold_``, ``training_losses_``), ``scorer.<attr>``
(recurrent ``state``, ``forecast_mean``, ``forecast_var``, ``norm_mean``,
``norm_var``, ``count``, ``last_time``) and ``wrapper<i>.<attr>``, the
per-stream arrays of the i-th wrapper (its ``STATE``: e.g. the likelihood's
``recent``, ``history``, ``seen``, ``mean``, ``std``, ``last_q``). Every array
keeps its dtype, so a loaded stream continues with bit-identical scores.
Version 1 files (the earlier likelihood) are refused with an error.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from ...core.files import atomic_write

FORMAT = "sparsernn.detectors/stream"
VERSION = 3
READABLE = (2, 3)
DETECTOR_ARRAYS = ("center_", "scale_", "decision_scores_", "labels_", "threshold_", "training_losses_")
SCORER_ARRAYS = ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var", "count", "last_time")


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


def _write(path, kind: str, config: dict, tensors: dict) -> None:
    """Write atomically (:func:`~sparsernn.core.files.atomic_write`)."""
    config_text = json.dumps({"kind": kind, **config, "versions": _versions()})
    payload = {"format": FORMAT, "version": VERSION, "config": config_text, "tensors": tensors,
               "sha256": _checksum(config_text, tensors)}
    with atomic_write(path) as file:
        torch.save(payload, file)


def _read(path) -> tuple[dict, dict]:
    """The config and tensors of a file; :class:`CorruptSaveError` for anything but a sound file."""
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
    return config, tensors


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
    config, tensors = _read(path)
    return _restoring(path, lambda: _detector_from(config["detector"], tensors, path))


VARIABLE_WIDTH = {"values"}
"""Wrapper arrays whose non-stream axes may differ from a fresh stream's (the seasonal ring widens)."""


def _wrapper_classes() -> dict:
    from .likelihood import AnomalyLikelihood
    from .novelty import WindowNovelty
    from .seasonal import SeasonalSurprise
    from .spatial import SpatialAnomaly
    from .suppression import PeakSuppression

    return {cls.__name__: cls for cls in (SeasonalSurprise, AnomalyLikelihood, WindowNovelty, PeakSuppression,
                                          SpatialAnomaly)}


def save_stream(stream, path) -> None:
    """Write a :class:`StreamScorer`, or any chain of wrappers around one, to ``path``."""
    from .wrappers import StreamWrapper

    chain = []
    scorer = stream
    while isinstance(scorer, StreamWrapper):
        chain.append(scorer)
        scorer = scorer.inner
    chain.reverse()  # innermost first
    known = _wrapper_classes()
    det_config, tensors = _detector_parts(scorer.detector)
    config = {"detector": det_config,
              "scorer": {"normalizer_halflife": scorer.normalizer_halflife, "min_scale": scorer.min_scale,
                         "stream_ids": scorer.stream_ids, "dict_keys": scorer.dict_keys},
              "wrappers": []}
    for attr in SCORER_ARRAYS:
        tensors[f"scorer.{attr}"] = torch.from_numpy(getattr(scorer, attr).copy())
    for i, wrapper in enumerate(chain):
        name = type(wrapper).__name__
        if known.get(name) is not type(wrapper):
            raise TypeError(f"stream: cannot save a {name} (known wrappers: {sorted(known)})")
        config["wrappers"].append({"class": name, "settings": wrapper._settings()})
        for attr, array in wrapper._state().items():
            tensors[f"wrapper{i}.{attr}"] = torch.from_numpy(np.ascontiguousarray(array))
    _write(path, type(stream).__name__, config, tensors)


def load_stream(path, expect: type | None = None):
    """Read a stream written by :func:`save_stream`; ``expect`` checks the outermost class."""
    from .scorer import StreamScorer

    config, tensors = _read(path)
    kinds = {"StreamScorer": StreamScorer, **_wrapper_classes()}
    if config.get("kind") not in kinds:
        raise ValueError(f"{path} holds a {config.get('kind')!r}, not a stream")
    if expect is not None and kinds[config["kind"]] is not expect:
        raise ValueError(f"{path} holds a {config['kind']}, not a {expect.__name__}")
    return _restoring(path, lambda: _stream_from(config, tensors, kinds, path))


def _stream_from(config: dict, tensors: dict, kinds: dict, path):
    from .scorer import StreamScorer

    detector = _detector_from(config["detector"], tensors, path)
    settings = config["scorer"]
    stream = StreamScorer(detector, settings["normalizer_halflife"], settings["min_scale"])
    ids = list(settings["stream_ids"])
    if len(set(ids)) != len(ids) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise CorruptSaveError(f"{path}: stream_ids must be distinct str / int ids; got {ids!r}")
    stream.stream_ids, stream._rows_of = ids, {sid: row for row, sid in enumerate(ids)}
    if settings.get("dict_keys") is not None:
        stream.dict_keys = list(settings["dict_keys"])
    n, d, size = len(ids), detector.n_channels_, stream.model.layer.state_size
    shapes = {"state": (n, size), "forecast_mean": (n, d), "forecast_var": (n, d), "norm_mean": (n, d),
              "norm_var": (n, d), "count": (n,), "last_time": (n,)}
    for attr in SCORER_ARRAYS:
        expected = getattr(stream, attr)
        array = _tensor(tensors, f"scorer.{attr}", path).numpy().copy()
        setattr(stream, attr, _check_array(path, f"scorer.{attr}", array, shapes[attr], dtype=expected.dtype))
    for i, part in enumerate(config["wrappers"]):
        if part["class"] not in kinds or part["class"] == "StreamScorer":
            raise CorruptSaveError(f"{path}: unknown wrapper {part['class']!r}")
        cls = kinds[part["class"]]
        stream = cls(stream, **part["settings"])
        fresh = cls(stream.inner, **part["settings"])
        fresh._grow(n)  # the arrays of n fresh streams: the shapes, dtypes and where NaN may be
        arrays = {}
        for attr in cls.STATE:
            array, like = _tensor(tensors, f"wrapper{i}.{attr}", path).numpy(), getattr(fresh, attr)
            shape = (n,) + (None,) * (like.ndim - 1) if attr in VARIABLE_WIDTH else like.shape
            _check_array(path, f"wrapper{i}.{attr}", array, shape, dtype=like.dtype,
                         finite=bool(np.isfinite(like).all()) if like.dtype.kind == "f" else True)
            if array.dtype.kind == "f" and np.isinf(array).any():
                raise CorruptSaveError(f"{path}: wrapper{i}.{attr} holds inf")
            arrays[attr] = array
        stream._load_state(arrays)
    return stream
