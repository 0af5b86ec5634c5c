"""The NAB score of a detector on a NAB-format corpus.

Faithful to NAB v1.1 (numenta/NAB ``nab/sweeper.py``, ``nab/optimizer.py``,
``nab/scorer.py``, ``nab/runner.py``):

* per file, rows are scored with the sweep scores of `sweep`; a file's raw
  score at a threshold sums its false positives and, per window, its first
  detection or the ``-fnWeight`` of a miss;
* the threshold is either given, or optimised like NAB's optimizer: one
  threshold shared by all files of the detector, found by sweeping every
  distinct anomaly score of the whole corpus and keeping the best total
  (ties: the highest threshold);
* the corpus score is normalised as in ``Runner.normalize``:
  ``100 * (raw - null) / (perfect - null)``, where *null* is the score of a
  detector that never fires (every window missed) and *perfect* is
  ``tpWeight`` times the number of labelled windows.

Examples
--------
>>> corpus = load_nab_corpus("shared/data/nab")                       # doctest: +SKIP
>>> results = read_results("shared/data/nab/results", "numenta", corpus)  # doctest: +SKIP
>>> score_corpus(results, corpus, "standard").score                   # doctest: +SKIP
66.59...
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import auc_pr, vus_pr
from .corpus import PROFILE_NAMES, NABCorpus, read_results
from .sweep import FileSweep, score_at_threshold, sweep_file, threshold_curve

ResultsLike = Mapping[str, "pd.DataFrame | pd.Series | np.ndarray"]


@dataclass(frozen=True, eq=False)
class NABResult:
    """A detector's NAB score on a corpus for one profile.

    Attributes
    ----------
    detector, profile : str
    score : float
        Normalised NAB score: 0 for the null detector, 100 for the perfect one.
    raw_score : float
        Sum of the files' raw scores.
    threshold : float
        The threshold used (given, or the optimised one).
    optimized : bool
        Whether ``threshold`` was optimised on this corpus.
    null_score, perfect_score : float
        The raw scores of the null and the perfect detector.
    per_file : pandas.DataFrame
        One row per file (index: relative name), columns ``score, tp, tn, fp, fn, total``.
    """

    detector: str
    profile: str
    score: float
    raw_score: float
    threshold: float
    optimized: bool
    null_score: float
    perfect_score: float
    per_file: pd.DataFrame

    def __repr__(self) -> str:
        how = "optimised" if self.optimized else "fixed"
        return (
            f"NABResult({self.detector!r}, {self.profile!r}, score={self.score:.2f}, "
            f"threshold={self.threshold:.6g} ({how}))"
        )


def normalized_score(raw_score: float, null_score: float, perfect_score: float) -> float:
    """NAB's normalisation: 0 for the null detector, 100 for the perfect detector."""
    if perfect_score == null_score:
        raise ValueError(
            f"cannot normalise: the perfect and null scores are equal ({perfect_score}); "
            "the corpus has no scorable anomaly window"
        )
    return 100.0 * (raw_score - null_score) / (perfect_score - null_score)


def anomaly_scores_of(result: pd.DataFrame | pd.Series | np.ndarray, name: str = "") -> np.ndarray:
    """The ``anomaly_score`` column of a results frame (or the array itself)."""
    if isinstance(result, pd.DataFrame):
        if "anomaly_score" not in result.columns:
            raise ValueError(f"results of {name!r} have no anomaly_score column (columns: {list(result.columns)})")
        result = result["anomaly_score"]
    return np.asarray(result, dtype=float)


def _aligned_scores(results: ResultsLike, corpus: NABCorpus) -> list[np.ndarray]:
    missing = sorted(set(corpus) - set(results))
    extra = sorted(set(results) - set(corpus))
    if missing or extra:
        raise ValueError(
            "results must have exactly the corpus files as keys; "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unknown {extra[:3]}{'...' if len(extra) > 3 else ''}"
        )
    return [anomaly_scores_of(results[name], name) for name in corpus]


def score_corpus(
    results: ResultsLike,
    corpus: NABCorpus,
    profile: str = "standard",
    threshold: float | None = None,
    detector: str = "detector",
) -> NABResult:
    """NAB-score one detector's anomaly scores on a corpus for one profile.

    Parameters
    ----------
    results : mapping of str to DataFrame, Series or array of shape (n_rows,)
        Per file of ``corpus`` (same keys), the anomaly scores in [0, 1]
        (a DataFrame must have an ``anomaly_score`` column).
    corpus : NABCorpus
    profile : str
        One of the corpus' profiles (``standard``, ``reward_low_FP_rate``,
        ``reward_low_FN_rate``).
    threshold : float, optional
        Detection threshold (``anomaly_score >= threshold``). When omitted, the
        threshold that maximises the corpus score is used (NAB's optimiser).
    detector : str
        Name reported in the result.
    """
    cost = corpus.profile(profile)
    scores = _aligned_scores(results, corpus)
    sweeps = [sweep_file(corpus[name], cost) for name in corpus]
    optimized = threshold is None
    if optimized:
        threshold = threshold_curve(scores, sweeps, cost).best().threshold
    per_file = _per_file(scores, sweeps, cost, float(threshold))
    null = -cost.fn_weight * sum(s.n_scored_windows for s in sweeps)
    perfect = cost.tp_weight * corpus.n_windows
    raw = float(per_file["score"].sum())
    return NABResult(
        detector, profile, normalized_score(raw, null, perfect), raw, float(threshold),
        optimized, null, perfect, per_file,
    )


def _per_file(scores: list[np.ndarray], sweeps: list[FileSweep], cost, threshold: float) -> pd.DataFrame:
    rows = []
    for file_scores, sweep in zip(scores, sweeps):
        point = score_at_threshold(file_scores, sweep, cost, threshold)
        rows.append((sweep.name, point.score, point.tp, point.tn, point.fp, point.fn, point.total))
    frame = pd.DataFrame(rows, columns=["file", "score", "tp", "tn", "fp", "fn", "total"])
    return frame.set_index("file")


def score_all_profiles(
    results: ResultsLike,
    corpus: NABCorpus,
    detector: str = "detector",
    thresholds: Mapping[str, float] | float | None = None,
    profiles: tuple[str, ...] = PROFILE_NAMES,
) -> dict[str, NABResult]:
    """`score_corpus` for each profile; ``thresholds`` per profile, shared, or None to optimise."""
    out = {}
    for profile in profiles:
        if isinstance(thresholds, Mapping):
            if profile not in thresholds:
                raise ValueError(f"thresholds has no entry for profile {profile!r} (has {sorted(thresholds)})")
            threshold = thresholds[profile]
        else:
            threshold = thresholds
        out[profile] = score_corpus(results, corpus, profile, threshold, detector)
    return out


def reference_thresholds(corpus: NABCorpus, detector: str) -> dict[str, float]:
    """The thresholds of ``config/thresholds.json`` for ``detector``, per profile."""
    if detector not in corpus.thresholds:
        raise ValueError(
            f"config/thresholds.json has no detector {detector!r} (has {sorted(corpus.thresholds)})"
        )
    return {profile: float(entry["threshold"]) for profile, entry in corpus.thresholds[detector].items()}


def score_results_dir(
    results_dir: str | Path,
    corpus: NABCorpus,
    detector: str,
    thresholds: Mapping[str, float] | float | None = None,
    profiles: tuple[str, ...] = PROFILE_NAMES,
) -> dict[str, NABResult]:
    """NAB-score ``results_dir/<detector>/...`` (NAB's layout) for each profile.

    ``thresholds=None`` optimises them on the corpus; pass
    ``reference_thresholds(corpus, detector)`` for NAB's fixed ones.
    """
    results = read_results(results_dir, detector, corpus)
    return score_all_profiles(results, corpus, detector, thresholds, profiles)


def range_metrics(results: ResultsLike, corpus: NABCorpus, sliding_window: int = 100) -> dict[str, float]:
    """Mean VUS-PR and AUC-PR over the files that have labelled rows after probation.

    Each file is evaluated on its rows after the probationary period (labels:
    1 inside NAB's windows); files without anomalies there are skipped.
    """
    scores = _aligned_scores(results, corpus)
    vus, auc = [], []
    for name, file_scores in zip(corpus, scores):
        data_file = corpus[name]
        keep = slice(data_file.probationary_length, None)
        labels = data_file.labels[keep]
        if labels.min() == labels.max():
            continue
        vus.append(vus_pr(labels, file_scores[keep], sliding_window=sliding_window))
        auc.append(auc_pr(labels, file_scores[keep]))
    if not vus:
        return {"vus_pr": float("nan"), "auc_pr": float("nan")}
    return {"vus_pr": float(np.mean(vus)), "auc_pr": float(np.mean(auc))}


def summarize(
    results: ResultsLike, corpus: NABCorpus, detector: str = "detector", sliding_window: int = 100
) -> dict[str, float]:
    """NAB scores of the three profiles (thresholds optimised on ``corpus``) plus VUS-PR and AUC-PR."""
    summary = {p: r.score for p, r in score_all_profiles(results, corpus, detector).items()}
    summary.update(range_metrics(results, corpus, sliding_window))
    return summary
