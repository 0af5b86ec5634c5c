"""Saving and loading detectors and live streams — tensors and JSON, never pickled code.

File format
-----------
One file written by ``torch.save`` holding a plain dict::

    {"format": "sparsernn.detectors/stream", "version": 1,
     "config": "<JSON text>",
     "tensors": {"<name>": tensor, ...}}

It is read back with ``torch.load(path, weights_only=True)``, which accepts
only tensors and plain containers, so loading a file runs no code from it.

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

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

FORMAT = "sparsernn.detectors/stream"
VERSION = 2
DETECTOR_ARRAYS = ("center_", "scale_", "decision_scores_", "labels_", "threshold_", "training_losses_")
SCORER_ARRAYS = ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var", "count", "last_time")


def _versions() -> dict:
    try:
        ours = metadata.version("sparsernn")
    except metadata.PackageNotFoundError:  # pragma: no cover
        ours = "unknown"
    return {"sparsernn": ours, "torch": torch.__version__, "numpy": np.__version__}


def _detector_parts(detector) -> tuple[dict, dict]:
    config = {"class": type(detector).__name__, "params": detector.get_params(deep=False),
              "n_channels": int(detector.n_channels_), "feature_names": detector.feature_names_}
    tensors = {f"model.{k}": v.detach().clone() for k, v in detector.model_.state_dict().items()}
    for attr in DETECTOR_ARRAYS:
        tensors[f"detector.{attr}"] = torch.from_numpy(np.array(getattr(detector, attr)))
    return config, tensors


def _detector_from(config: dict, tensors: dict):
    from .selective_update import SelectiveUpdateDetector

    if config["class"] != SelectiveUpdateDetector.__name__:
        raise ValueError(f"unknown detector class {config['class']!r} in file")
    params = dict(config["params"])
    if isinstance(params.get("router_keep"), list):
        params["router_keep"] = tuple(params["router_keep"])
    detector = SelectiveUpdateDetector(**params)
    detector.n_channels_ = config["n_channels"]
    detector.feature_names_ = config["feature_names"]
    for attr in DETECTOR_ARRAYS:
        value = tensors[f"detector.{attr}"].numpy()
        setattr(detector, attr, value.item() if value.ndim == 0 else value)
    detector.training_losses_ = list(detector.training_losses_)
    detector.model_ = detector._build_model(detector.n_channels_)
    prefix = "model."
    detector.model_.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    detector.model_.eval()
    return detector


def _write(path, kind: str, config: dict, tensors: dict) -> None:
    config = {"kind": kind, **config, "versions": _versions()}
    payload = {"format": FORMAT, "version": VERSION, "config": json.dumps(config), "tensors": tensors}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def _read(path) -> tuple[dict, dict]:
    payload = torch.load(Path(path), weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparsernn detector/stream file (format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has format version {payload.get('version')!r}; this version reads {VERSION}")
    return json.loads(payload["config"]), payload["tensors"]


def save_detector(detector, path) -> None:
    """Write a fitted :class:`SelectiveUpdateDetector` to ``path``."""
    config, tensors = _detector_parts(detector)
    _write(path, "detector", {"detector": config}, tensors)


def load_detector(path):
    """Read a detector written by :func:`save_detector` (or the detector of a stream file)."""
    config, tensors = _read(path)
    return _detector_from(config["detector"], tensors)


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
                         "stream_ids": scorer.stream_ids},
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
    from .streaming import StreamScorer

    config, tensors = _read(path)
    kinds = {"StreamScorer": StreamScorer, **_wrapper_classes()}
    if config["kind"] not in kinds:
        raise ValueError(f"{path} holds a {config['kind']!r}, not a stream")
    if expect is not None and kinds[config["kind"]] is not expect:
        raise ValueError(f"{path} holds a {config['kind']}, not a {expect.__name__}")
    detector = _detector_from(config["detector"], tensors)
    settings = config["scorer"]
    stream = StreamScorer(detector, settings["normalizer_halflife"], settings["min_scale"])
    stream.stream_ids = list(settings["stream_ids"])
    stream._rows_of = {sid: row for row, sid in enumerate(stream.stream_ids)}
    for attr in SCORER_ARRAYS:
        setattr(stream, attr, tensors[f"scorer.{attr}"].numpy().copy())
    for i, part in enumerate(config["wrappers"]):
        cls = kinds[part["class"]]
        stream = cls(stream, **part["settings"])
        stream._load_state({attr: tensors[f"wrapper{i}.{attr}"].numpy() for attr in cls.STATE})
    return stream
