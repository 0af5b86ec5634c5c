"""sparsernn.detectors.stream: river-style scoring of one or many streams.

:class:`StreamScorer` scores and learns points of many streams with one
detector; the wrappers (:class:`AnomalyLikelihood`, :class:`SeasonalSurprise`,
:class:`WindowNovelty`, :class:`SpatialAnomaly`, :class:`PeakSuppression`)
nest around it, and :func:`save_stream` / :func:`load_stream` write and read a
whole chain.
"""
from .likelihood import AnomalyLikelihood
from .novelty import WindowNovelty
from .persistence import CorruptSaveError, load_stream, save_stream
from .scorer import StreamScorer
from .seasonal import SeasonalSurprise
from .spatial import SpatialAnomaly
from .suppression import PeakSuppression

__all__ = ["StreamScorer", "AnomalyLikelihood", "SeasonalSurprise", "WindowNovelty", "SpatialAnomaly",
           "PeakSuppression", "save_stream", "load_stream", "CorruptSaveError"]
