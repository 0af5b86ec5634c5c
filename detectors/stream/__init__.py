"""sparsernn.detectors.stream: river-style scoring of one or many streams.

:class:`StreamScorer` scores and learns points of many streams with one
detector (and, with ``learn=``:class:`OnlineLearning`, learns each stream's own copy of the
forecaster's weights as it streams); the wrappers (:class:`AnomalyLikelihood`, :class:`SeasonalSurprise`,
:class:`WindowNovelty`, :class:`SpatialAnomaly`, :class:`PeakSuppression`,
all :class:`StreamWrapper` subclasses) nest around it, and
:func:`save_stream` / :func:`load_stream` write and read a whole chain.
:class:`LikelihoodEstimator` / :func:`likelihood_scores` are the anomaly
likelihood on its own (also used by the NAB baselines), and
:func:`rows_per_season` the seasonal wrapper's period from timestamps (:func:`season_periods`: the
rhythm gate's periods of a day, a week, ... in rows).
:class:`RiverDetector` (needs the optional ``river``) is one stream as a river
``AnomalyDetector``; it is imported on first use, so the package works without river.
"""
from .likelihood import AnomalyLikelihood, LikelihoodEstimator, likelihood_scores
from .novelty import WindowNovelty
from .online import OnlineLearning
from .persistence import CorruptSaveError, load_stream, save_stream
from .scorer import StreamScorer
from .seasonal import SeasonalSurprise, rows_per_season, season_periods
from .spatial import SpatialAnomaly
from .suppression import PeakSuppression
from .wrappers import StreamWrapper

__all__ = ["StreamScorer", "OnlineLearning", "StreamWrapper", "AnomalyLikelihood", "SeasonalSurprise", "WindowNovelty",
           "SpatialAnomaly", "PeakSuppression", "save_stream", "load_stream", "CorruptSaveError",
           "LikelihoodEstimator", "likelihood_scores", "rows_per_season", "season_periods"]


def __getattr__(name: str):
    """``RiverDetector`` on first use: it needs the optional dependency river."""
    if name == "RiverDetector":
        try:
            from .river_adapter import RiverDetector
        except ModuleNotFoundError as error:
            if error.name != "river":
                raise
            raise ImportError("RiverDetector needs river: pip install 'sparsernn[baselines]' (or river>=0.21)") \
                from error
        return RiverDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
