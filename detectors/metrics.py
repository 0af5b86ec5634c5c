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
    split = ranges[1:, 0] - ranges[:-1, 1] > 2 * half  # TSB-AD: end + half < next start - half
    starts = ranges[np.r_[True, split], 0] - half
    ends = ranges[np.r_[split, True], 1] + half
    starts[0], ends[-1] = max(starts[0], 0), min(ends[-1], n - 1)
    return np.stack([starts, ends], axis=1)


def _border_credit(labels: np.ndarray, ranges: np.ndarray, max_window: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft labels of the rows just outside the ranges, for every border width.

    TSB-AD's ``sequencing``: for width ``w``, a normal row at distance
    ``d <= w // 2`` after the end (before the start) of a range gets
    ``sqrt(1 - d / w)``, summed over ranges and capped at 1. Returns the rows
    that get credit for some width, and an array of shape (n_rows, max_window + 1).
    """
    n = len(labels)
    reach = max_window // 2
    near = np.zeros(n, dtype=bool)
    for start, end in ranges:
        near[max(start - reach, 0) : min(end + reach + 1, n)] = True
    rows = np.flatnonzero(near & (labels == 0))
    widths = np.arange(max_window + 1)
    credit = np.zeros((len(rows), len(widths)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start, end in ranges:
            for distance in (rows - end, start - rows):  # after the range, before it
                d = distance[:, None].astype(float)
                inside = (d >= 1) & (d <= widths[None, :] // 2)
                credit += np.where(inside, np.sqrt(np.where(inside, 1 - d / np.maximum(widths, 1), 0.0)), 0.0)
    return rows, np.minimum(credit, 1.0)


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

    # Detections are the rows with score >= threshold, at thresholds taken from the sorted scores.
    ascending = np.sort(scores)
    thresholds = ascending[::-1][np.linspace(0, n - 1, n_thresholds).astype(int)]
    n_predicted = (n - np.searchsorted(ascending, thresholds, side="left")).astype(float)
    anomalous = np.sort(scores[labels == 1])
    tp_inside = (len(anomalous) - np.searchsorted(anomalous, thresholds, side="left")).astype(float)
    rows, credit = _border_credit(labels, ranges, int(sliding_window))
    hits = (scores[rows][None, :] >= thresholds[:, None]).astype(float)
    tp_border = hits @ credit  # (n_thresholds, L + 1): soft credit for detections in the borders

    padded = np.r_[scores, -np.inf]  # lets a segment end on the last row
    existence = np.empty_like(tp_border)
    for half in range(sliding_window // 2 + 1):  # segments depend on w // 2 only
        segments = _merged_ranges(ranges, 2 * half, n)
        bounds = np.stack([segments[:, 0], segments[:, 1] + 1], axis=1).ravel()
        peaks = np.maximum.reduceat(padded, bounds)[::2]  # max score of each segment
        hit = (peaks[None, :] >= thresholds[:, None]).sum(axis=1) / len(segments)
        existence[:, 2 * half : 2 * half + 2] = hit[:, None]

    tp = tp_inside[:, None] + tp_border
    positives = n_positive + tp_border / 2.0  # TSB-AD: (P + N_labels) / 2
    recall = np.minimum(tp / positives, 1.0) * existence
    precision = tp / n_predicted[:, None]
    recall_gain = np.diff(recall, axis=0, prepend=0.0)
    average_precision = np.sum(recall_gain * precision, axis=0)
    return float(average_precision.mean())
