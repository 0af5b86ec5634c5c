"""Threshold-free accuracy metrics for anomaly scores: VUS-PR and AUC-PR.

* `auc_pr`: point-wise area under the precision-recall curve, as average
  precision (``sklearn.metrics.average_precision_score``).
* `vus_pr`: the *volume under the range-aware PR surface* of Paparrizos et al.,
  "Volume Under the Surface: a new accuracy evaluation measure for time-series
  anomaly detection" (VLDB 2022), in the form that TSB-AD uses
  (``TSB_AD.evaluation.basic_metrics.basic_metricor.RangeAUC_volume_opt``,
  identical to ``vus.utils.metrics.metricor.RangeAUC_volume_opt``): every
  anomaly range is widened by a soft border of ``w // 2`` rows
  (``sqrt(1 - d / w)`` at distance ``d``), a range-aware precision and recall
  (recall weighted by the share of ranges hit) are computed at ``n_thresholds``
  score quantiles, and the area under each range-PR curve is averaged over
  ``w = 0 .. sliding_window``.

Neither package installs without heavy dependencies (TensorFlow, or torch and
transformers with numpy < 2), so this module reimplements the computation,
vectorised over thresholds; ``tests/detectors/test_metrics.py`` holds known
answers computed with TSB-AD's own code.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def _check_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D arrays of shape (n,), got shapes {labels.shape} and {scores.shape}"
        )
    if len(labels) != len(scores):
        raise ValueError(f"labels and scores must have the same length, got {len(labels)} and {len(scores)}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be finite; found {int(np.sum(~np.isfinite(scores)))} NaN or inf values")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError("labels must be 0 or 1; found NaN or inf")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"labels must be 0 or 1, got values {np.unique(labels)[:5]}")
    labels = labels.astype(np.int64)
    if labels.min() == labels.max():
        raise ValueError(
            f"labels are all {labels[0]}: precision-recall metrics need both anomalous and normal points"
        )
    return labels, scores


def auc_pr(labels, scores) -> float:
    """Point-wise AUC-PR (average precision) of ``scores`` against 0/1 ``labels``.

    Parameters
    ----------
    labels : array of shape (n,)
        1 for anomalous points, 0 otherwise; both must occur.
    scores : array of shape (n,)
        Anomaly scores, higher is more anomalous.
    """
    labels, scores = _check_inputs(labels, scores)
    return float(average_precision_score(labels, scores))


def anomaly_ranges(labels: np.ndarray) -> np.ndarray:
    """``(start, end)`` rows (inclusive) of each run of 1s, array of shape (n_ranges, 2)."""
    padded = np.r_[0, np.asarray(labels, dtype=np.int64), 0]
    change = np.diff(padded)
    return np.stack([np.flatnonzero(change == 1), np.flatnonzero(change == -1) - 1], axis=1)


def _merged_ranges(ranges: np.ndarray, window: int, n: int) -> np.ndarray:
    """Ranges widened by ``window // 2`` on each side, overlapping ones merged (TSB-AD's ``new_sequence``)."""
    half = window // 2
    merged = []
    start = max(ranges[0, 0] - half, 0)
    for k in range(len(ranges) - 1):
        if ranges[k, 1] + half < ranges[k + 1, 0] - half:
            merged.append((start, ranges[k, 1] + half))
            start = ranges[k + 1, 0] - half
    merged.append((start, min(ranges[-1, 1] + half, n - 1)))
    return np.asarray(merged, dtype=np.int64)


def _soft_labels(labels: np.ndarray, ranges: np.ndarray, window: int) -> np.ndarray:
    """Labels with a soft border of ``window // 2`` rows around each range (TSB-AD's ``sequencing``)."""
    soft = labels.astype(float)
    n = len(soft)
    for start, end in ranges:
        after = np.arange(end + 1, min(end + window // 2 + 1, n))
        soft[after] += np.sqrt(1 - (after - end) / window)
        before = np.arange(max(start - window // 2, 0), start)
        soft[before] += np.sqrt(1 - (start - before) / window)
    return np.minimum(soft, 1.0)


def vus_pr(labels, scores, sliding_window: int = 100, n_thresholds: int = 250) -> float:
    """Range-aware VUS-PR (Paparrizos et al., 2022), as computed by TSB-AD.

    Parameters
    ----------
    labels : array of shape (n,)
        1 for anomalous points, 0 otherwise; both must occur.
    scores : array of shape (n,)
        Anomaly scores, higher is more anomalous.
    sliding_window : int
        Largest border width ``L``; the PR areas for borders ``0 .. L`` are averaged.
    n_thresholds : int
        Number of thresholds, taken at evenly spaced ranks of the sorted scores.

    Returns
    -------
    float in [0, 1]
    """
    labels, scores = _check_inputs(labels, scores)
    if not isinstance(sliding_window, (int, np.integer)) or sliding_window < 0:
        raise ValueError(f"sliding_window must be an int >= 0, got {sliding_window!r}")
    if not isinstance(n_thresholds, (int, np.integer)) or n_thresholds < 1:
        raise ValueError(f"n_thresholds must be an int >= 1, got {n_thresholds!r}")
    n = len(labels)
    ranges = anomaly_ranges(labels)
    n_positive = float(labels.sum())

    ranks = np.linspace(0, n - 1, n_thresholds).astype(int)
    thresholds = -np.sort(-scores)[ranks]
    predicted = scores[None, :] >= thresholds[:, None]  # (n_thresholds, n)
    n_predicted = predicted.sum(axis=1).astype(float)
    hits = predicted.astype(float)
    tp_inside = hits @ labels.astype(float)
    counts = np.concatenate([np.zeros((n_thresholds, 1), dtype=np.int64), np.cumsum(predicted, axis=1)], axis=1)

    windows = np.arange(sliding_window + 1)
    border = np.stack([_soft_labels(labels, ranges, w) - labels for w in windows], axis=1)  # (n, L+1)
    tp_border = hits @ border  # (n_thresholds, L+1): soft credit for detections in the borders

    average_precision = np.empty(len(windows))
    for w in windows:
        segments = _merged_ranges(ranges, int(w), n)
        hit_any = (counts[:, segments[:, 1] + 1] - counts[:, segments[:, 0]]) > 0
        existence = hit_any.sum(axis=1) / len(segments)
        tp = tp_inside + tp_border[:, w]
        positives = n_positive + tp_border[:, w] / 2.0  # TSB-AD: (P + N_labels) / 2
        recall = np.minimum(tp / positives, 1.0) * existence
        precision = tp / n_predicted
        average_precision[w] = np.dot(np.diff(np.r_[0.0, recall]), precision)
    return float(average_precision.mean())
