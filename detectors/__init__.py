"""sparsernn.detectors: anomaly detection with sparse, selective-update recurrent models.

- :class:`SelectiveUpdateDetector` — a PyOD detector (fit / decision_function /
  predict) built on a core :class:`~sparsernn.core.SparseRecurrent` forecaster;
  :func:`save_detector` / :func:`load_detector`.
- :class:`StreamScorer` — river-style streaming (``score_one`` / ``learn_one``)
  over one or many streams (optionally learning each stream's forecaster online,
  :class:`OnlineLearning`), and the wrappers that nest around it:
  :class:`AnomalyLikelihood` (NAB's HTM likelihood), :class:`SeasonalSurprise`,
  :class:`WindowNovelty`, :class:`SpatialAnomaly`, :class:`PeakSuppression`;
  :func:`save_stream` / :func:`load_stream` write and read a whole chain
  (:class:`CorruptSaveError` for a file that cannot be restored exactly).
- :class:`RiverDetector` — one stream as a river ``AnomalyDetector`` (dict points; river
  pipelines, ``ThresholdFilter`` / ``QuantileFilter``); needs the optional ``river`` and is
  imported on first use.
- :func:`auc_pr`, :func:`vus_pr` — range-aware metrics of scores against labels.

The streaming internals are in :mod:`sparsernn.detectors.stream`, the NAB
benchmark (corpus, scoring, threshold sweep, baselines, the tuned
:class:`~sparsernn.detectors.nab.SelectiveUpdateNAB` chain, the registry of
benchmark detectors) in :mod:`sparsernn.detectors.nab`.
"""
from .metrics import auc_pr, vus_pr
from .selective_update import SelectiveUpdateDetector
from .stream import (AnomalyLikelihood, CorruptSaveError, OnlineLearning, PeakSuppression, SeasonalSurprise,
                     SpatialAnomaly, StreamScorer, WindowNovelty, load_stream, save_stream)
from .stream.persistence import load_detector, save_detector

__all__ = [
    "SelectiveUpdateDetector", "save_detector", "load_detector",
    "StreamScorer", "OnlineLearning", "AnomalyLikelihood", "SeasonalSurprise", "WindowNovelty", "SpatialAnomaly", "PeakSuppression",
    "save_stream", "load_stream", "CorruptSaveError",
    "auc_pr", "vus_pr",
]


def __getattr__(name: str):
    """``RiverDetector`` on first use (it needs the optional dependency river)."""
    if name == "RiverDetector":
        from . import stream

        return stream.RiverDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
