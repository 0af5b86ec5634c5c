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

- ``kind``: ``"detector"``, ``"StreamScorer"`` or ``"AnomalyLikelihood"``;
- ``detector``: ``class``, ``params`` (``get_params()``), ``n_channels``,
  ``feature_names``;
- ``scorer``: ``normalizer_halflife``, ``min_scale``, ``stream_ids``;
- ``likelihood``: its four parameters and the prior ``(mean, var, count)``;
- ``versions``: of sparsernn, torch and numpy that wrote the file.

``tensors`` holds ``model.<name>`` (the forecaster's ``state_dict``: weights,
masks), ``detector.<attr>`` (``center_``, ``scale_``, ``decision_scores_``,
``labels_``, ``threshold_``, ``training_losses_``), ``scorer.<attr>``
(recurrent ``state``, ``forecast_mean``, ``forecast_var``, ``norm_mean``,
``norm_var``, ``count``, ``last_time``) and ``likelihood.<attr>`` (``recent``,
``seen``, ``mean``, ``var``, ``count``). Every array keeps its dtype, so a loaded stream
continues with bit-identical scores.
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

FORMAT = "sparsernn.detectors/stream"
VERSION = 1
DETECTOR_ARRAYS = ("center_", "scale_", "decision_scores_", "labels_", "threshold_", "training_losses_")
SCORER_ARRAYS = ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var", "count", "last_time")
LIKELIHOOD_ARRAYS = ("recent", "seen", "mean", "var", "count")


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


def save_stream(stream, path) -> None:
    """Write a :class:`StreamScorer` or :class:`AnomalyLikelihood` (with its scorer) to ``path``."""
    from .likelihood import AnomalyLikelihood

    wrapper = stream if isinstance(stream, AnomalyLikelihood) else None
    scorer = wrapper.scorer if wrapper is not None else stream
    det_config, tensors = _detector_parts(scorer.detector)
    config = {"detector": det_config,
              "scorer": {"normalizer_halflife": scorer.normalizer_halflife, "min_scale": scorer.min_scale,
                         "stream_ids": scorer.stream_ids}}
    for attr in SCORER_ARRAYS:
        tensors[f"scorer.{attr}"] = torch.from_numpy(getattr(scorer, attr).copy())
    if wrapper is not None:
        wrapper._sync()
        config["likelihood"] = {"short_window": wrapper.short_window, "long_window": wrapper.long_window,
                                "min_std": wrapper.min_std, "alarm_threshold": wrapper.alarm_threshold,
                                "prior": [wrapper.prior_mean, wrapper.prior_var, wrapper.prior_count]}
        for attr in LIKELIHOOD_ARRAYS:
            tensors[f"likelihood.{attr}"] = torch.from_numpy(getattr(wrapper, attr).copy())
    _write(path, type(stream).__name__, config, tensors)


def load_stream(path, expect: type | None = None):
    """Read a stream written by :func:`save_stream`; ``expect`` checks its class."""
    from .likelihood import AnomalyLikelihood
    from .streaming import StreamScorer

    config, tensors = _read(path)
    kinds = {"StreamScorer": StreamScorer, "AnomalyLikelihood": AnomalyLikelihood}
    if config["kind"] not in kinds:
        raise ValueError(f"{path} holds a {config['kind']!r}, not a stream")
    if expect is not None and kinds[config["kind"]] is not expect:
        raise ValueError(f"{path} holds a {config['kind']}, not a {expect.__name__}")
    detector = _detector_from(config["detector"], tensors)
    settings = config["scorer"]
    scorer = StreamScorer(detector, settings["normalizer_halflife"], settings["min_scale"])
    scorer.stream_ids = list(settings["stream_ids"])
    scorer._rows_of = {sid: row for row, sid in enumerate(scorer.stream_ids)}
    for attr in SCORER_ARRAYS:
        setattr(scorer, attr, tensors[f"scorer.{attr}"].numpy().copy())
    if config["kind"] == "StreamScorer":
        return scorer
    settings = config["likelihood"]
    wrapper = AnomalyLikelihood(scorer, settings["short_window"], settings["long_window"], settings["min_std"],
                                settings["alarm_threshold"])
    wrapper.prior_mean, wrapper.prior_var, wrapper.prior_count = settings["prior"]
    for attr in LIKELIHOOD_ARRAYS:
        setattr(wrapper, attr, tensors[f"likelihood.{attr}"].numpy().copy())
    return wrapper
