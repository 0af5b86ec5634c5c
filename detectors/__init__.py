"""sparsernn.detectors: anomaly detection with sparse, selective-update recurrent models.

- :class:`SelectiveUpdateDetector` — a PyOD detector (fit / decision_function /
  predict) built on a core :class:`~sparsernn.core.SparseRecurrent` forecaster.
- :class:`StreamScorer` and the :class:`AnomalyLikelihood` wrapper — river-style
  streaming (``score_one`` / ``learn_one``) over one or many streams, with
  ``save`` / ``load`` of the complete state (the likelihood is NAB's HTM
  estimator, also behind the baselines' calibration); :class:`SeasonalSurprise`,
  which adds the surprise of the residual against one day earlier;
  :class:`WindowNovelty`, the maximum with a likelihood of how far the recent
  window is from every earlier one;
  :class:`PeakSuppression`, a wrapper that reports one score per burst of high
  scores; :class:`SpatialAnomaly`, NAB's rule that a value outside the range
  seen so far scores 1.0. All wrappers nest and save / load as one chain.
- NAB: the corpus loader, NAB's scorer and threshold sweep, VUS-PR / AUC-PR, and
  causal baseline detectors with a common streaming interface.
"""
from .nab.baselines import (BASELINES, CalibratedStreamDetector, HalfSpaceTreesDetector, IForestDetector,
                        LSTMDetector, NABStreamDetector, anomaly_likelihood, check_series, lagged_windows,
                        run_corpus)
from .forecaster import GaussianForecaster, forecast
from .stream.likelihood import AnomalyLikelihood, LikelihoodEstimator, likelihood_scores
from .metrics import anomaly_ranges, auc_pr, vus_pr
from .nab.chain import SelectiveUpdateNAB
from .stream.novelty import WindowNovelty
from .nab.corpus import (PROBATIONARY_PERCENT, PROFILE_NAMES, CostProfile, NABCorpus, NABDataFile,
                       list_result_detectors, load_nab_corpus, load_profiles, load_reference_scores,
                       probationary_length, read_results, read_series, results_path, write_results)
from .nab.scoring import (NABResult, anomaly_scores_of, normalized_score, range_metrics, reference_thresholds,
                          score_all_profiles, score_corpus, score_results_dir, summarize)
from .nab.sweep import (NO_WINDOW, START_THRESHOLD, FileSweep, ThresholdCurve, ThresholdPoint, legacy_row_scores, scaled_sigmoid,
                        score_at_threshold, sweep_file, threshold_curve)
from .stream.persistence import CorruptSaveError, load_detector, load_stream, save_detector, save_stream
from .selective_update import SelectiveUpdateDetector
from .stream.scorer import StreamScorer
from .stream.seasonal import SeasonalSurprise, rows_per_season
from .stream.spatial import SpatialAnomaly
from .stream.suppression import PeakSuppression

__all__ = [
    # selective-update detector and streaming
    "SelectiveUpdateDetector", "GaussianForecaster", "forecast", "StreamScorer", "AnomalyLikelihood",
    "save_detector", "load_detector", "save_stream", "load_stream", "CorruptSaveError", "SelectiveUpdateNAB",
    "PeakSuppression", "SpatialAnomaly", "SeasonalSurprise", "WindowNovelty", "rows_per_season", "LikelihoodEstimator",
    "likelihood_scores",
    # baselines
    "BASELINES", "NABStreamDetector", "CalibratedStreamDetector", "IForestDetector", "LSTMDetector",
    "HalfSpaceTreesDetector", "anomaly_likelihood", "check_series", "lagged_windows", "run_corpus",
    # metrics
    "auc_pr", "vus_pr", "anomaly_ranges",
    # NAB data, scoring and sweep
    "PROBATIONARY_PERCENT", "PROFILE_NAMES", "CostProfile", "NABDataFile", "NABCorpus", "load_nab_corpus",
    "load_profiles", "load_reference_scores", "read_series", "read_results", "write_results", "results_path",
    "list_result_detectors", "probationary_length", "NABResult", "normalized_score", "anomaly_scores_of",
    "score_corpus", "score_all_profiles", "reference_thresholds", "score_results_dir", "range_metrics",
    "summarize", "FileSweep", "ThresholdCurve", "ThresholdPoint", "sweep_file", "threshold_curve",
    "score_at_threshold", "scaled_sigmoid", "legacy_row_scores", "NO_WINDOW", "START_THRESHOLD",
]
