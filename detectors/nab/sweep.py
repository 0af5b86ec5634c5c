"""NAB's scoring function and threshold sweep, vectorised with numpy.

This module reproduces, number for number, the scorer of the Numenta Anomaly
Benchmark (numenta/NAB v1.1, ``nab/sweeper.py``; the corpus-level parts are
in ``scoring``):

* Every row gets a *sweep score* (`FileSweep.weights`). A row inside a window
  scores ``tpWeight * S(pos) / S(-1)``, where ``pos = -(right - i + 1) / width``
  is its relative position in the window and
  ``S(x) = 2 / (1 + exp(5 x)) - 1`` is NAB's scaled sigmoid (`scaled_sigmoid`).
  A row outside every window scores ``fpWeight * S(|i - right_prev| / (width_prev - 1))``
  relative to the closest preceding window, or ``-fpWeight`` before the first.
* Rows of the probationary period (the first ``floor(0.15 n)`` rows, at most
  750) are never scored.
* For one threshold, a file's score is the sum of the sweep scores of its
  false positives (detections outside windows), plus for each window the
  sweep score of its best (that is, first) detection, or ``-fnWeight`` when
  nothing in it is detected. A row is detected when ``anomaly_score >= threshold``.
* `threshold_curve` sweeps every distinct anomaly score as a threshold, from
  the highest down, like NAB's ``Sweeper.calcScoreByThreshold``, over one file
  or a whole corpus at once (thresholds shared across files).

`legacy_row_scores` gives the per-row ``S(t)`` columns written by NAB's
earlier scorer (``nab/scorer.py`` before the sweeper), which still appear in
NAB's published results for several detectors.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .corpus import CostProfile, NABDataFile

NO_WINDOW = -1
"""`FileSweep.window` value of a row outside every window."""

START_THRESHOLD = 1.1
"""NAB's first threshold, above every anomaly score: nothing is detected."""


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 x) - 1``, and -1 for ``x > 3``."""
    position = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 * (1.0 / (1.0 + np.exp(5.0 * position))) - 1.0
    return np.where(position > 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True, eq=False)
class FileSweep:
    """The sweep scores of one file under one cost profile (NAB's ``calcSweepScore``).

    Attributes
    ----------
    name : str
        The file's relative name.
    weights : array of shape (n_rows,)
        Each row's sweep score: what detecting it would add (see module doc).
        These are NAB's per-row ``S(t)_<profile>`` values.
    window : array of shape (n_rows,)
        Index of the window the row belongs to, `NO_WINDOW` outside windows.
    probationary : int
        Rows ``[0, probationary)`` are not scored.
    """

    name: str
    weights: np.ndarray
    window: np.ndarray
    probationary: int

    @property
    def scorable(self) -> np.ndarray:
        """Boolean array of shape (n_rows,): rows after the probationary period."""
        return np.arange(len(self.weights)) >= self.probationary

    @property
    def n_scored_windows(self) -> int:
        """Windows with at least one scorable row (those that can be missed)."""
        return len(np.unique(self.window[self.scorable & (self.window != NO_WINDOW)]))


def _window_rows(stamps: np.ndarray, windows: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, float, bool]]:
    """Where NAB's row loop enters and leaves each window.

    Returns ``(first_row, last_row, right_index, width, exits)`` per entered
    window. NAB enters a window at the first row (after the previous entry)
    whose timestamp equals its start, takes ``right_index`` and ``width``
    from the first occurrences of its limits, stays in it until a row whose
    timestamp equals its end (``exits``) or until the next window is entered.
    """
    entered = []
    search_from = 0
    for start, end in windows:
        hits = np.flatnonzero(stamps[search_from:] == start)
        if len(hits) == 0:
            break  # NAB keeps waiting for this window: no later window is entered either
        first = search_from + int(hits[0])
        right_index = int(np.flatnonzero(stamps == end)[0])
        width = float(right_index - int(np.flatnonzero(stamps == start)[0]) + 1)
        ends = np.flatnonzero(stamps[first:] == end)
        last = first + int(ends[0]) if len(ends) else len(stamps) - 1
        entered.append([first, last, right_index, width, len(ends) > 0])
        search_from = first + 1
    for this, following in zip(entered, entered[1:]):
        if following[0] <= this[1]:  # the next window is entered before this one ends
            this[1], this[4] = following[0] - 1, False
    return [tuple(w) for w in entered]


def sweep_file(data_file: NABDataFile, profile: CostProfile) -> FileSweep:
    """Compute every row's NAB sweep score for one file and profile."""
    stamps = data_file.timestamps.as_unit("ns").asi8
    limits = [(start.value, end.value) for start, end in data_file.windows]
    n = len(stamps)
    rows = np.arange(n)
    window = np.full(n, NO_WINDOW, dtype=np.int64)
    weights = np.full(n, -1.0 * profile.fp_weight)  # before any window: far from all

    entered = _window_rows(stamps, limits)
    for k, (first, last, right_index, width, exits) in enumerate(entered):
        inside = rows[first : last + 1]
        window[inside] = k
        weights[inside] = scaled_sigmoid(-(right_index - inside + 1) / width) * profile.tp_weight / _MAX_TP
        if exits:  # rows up to the next window are scored against this one
            following = entered[k + 1][0] if k + 1 < len(entered) else n
            after = rows[last + 1 : following]
            # NAB divides by (width - 1) and fails on a one-row window; here it scores -fpWeight.
            with np.errstate(divide="ignore"):
                weights[after] = scaled_sigmoid(np.abs(last - after) / (width - 1.0)) * profile.fp_weight
    return FileSweep(data_file.name, weights, window, data_file.probationary_length)


@dataclass(frozen=True, eq=False)
class ThresholdPoint:
    """NAB's ``ThresholdScore``: the raw score and row counts at one threshold."""

    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.tn + self.fp + self.fn


@dataclass(frozen=True, eq=False)
class ThresholdCurve:
    """Raw NAB score as a function of the threshold (NAB's ``calcScoreByThreshold``).

    ``thresholds[j]`` are NAB's candidate thresholds: 1.1, then every distinct
    anomaly score from the highest down; ``scores[j]`` (and the counts) hold
    when every scorable row with ``anomaly_score >= thresholds[j]`` is a
    detection. Counts are of rows, as in NAB (tp: detected rows in windows).
    """

    thresholds: np.ndarray
    scores: np.ndarray
    tp: np.ndarray
    tn: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    _sorted_scores: np.ndarray
    _totals: np.ndarray
    _tp_after: np.ndarray
    _fp_after: np.ndarray

    def __len__(self) -> int:
        return len(self.thresholds)

    def point(self, j: int) -> ThresholdPoint:
        return ThresholdPoint(
            float(self.thresholds[j]), float(self.scores[j]),
            int(self.tp[j]), int(self.tn[j]), int(self.fp[j]), int(self.fn[j]),
        )

    def best(self) -> ThresholdPoint:
        """The highest score; among equal scores the highest threshold, as NAB's optimizer picks."""
        return self.point(int(np.argmax(self.scores)))

    def at(self, threshold: float) -> ThresholdPoint:
        """The score when rows with ``anomaly_score >= threshold`` are detections."""
        k = int(np.searchsorted(-self._sorted_scores, -float(threshold), side="right"))
        n_window = int(self.tp[0] + self.fn[0])
        n_outside = int(self.tn[0] + self.fp[0])
        tp, fp = int(self._tp_after[k]), int(self._fp_after[k])
        return ThresholdPoint(float(threshold), float(self._totals[k]), tp, n_outside - fp, fp, n_window - tp)


def _check_scores(anomaly_scores: np.ndarray, sweep: FileSweep) -> np.ndarray:
    scores = np.asarray(anomaly_scores, dtype=float)
    if scores.shape != sweep.weights.shape:
        raise ValueError(
            f"anomaly scores of {sweep.name!r} must have shape {sweep.weights.shape}, got {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"anomaly scores of {sweep.name!r} must be finite (found NaN or inf)")
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ValueError(
            f"anomaly scores of {sweep.name!r} must lie in [0, 1] (NAB sweeps thresholds from 1.1 down), "
            f"got range [{scores.min()}, {scores.max()}]"
        )
    return scores


def score_at_threshold(
    anomaly_scores: np.ndarray, sweep: FileSweep, profile: CostProfile, threshold: float
) -> ThresholdPoint:
    """One file's raw score at one threshold, straight from the definition.

    The plain counterpart of `threshold_curve(...).at(threshold)`: detections
    are the scorable rows with ``anomaly_score >= threshold``.
    """
    scores = _check_scores(anomaly_scores, sweep)
    scorable = sweep.scorable
    detected = scorable & (scores >= threshold)
    outside = sweep.window == NO_WINDOW
    total = float(np.sum(sweep.weights[detected & outside]))
    for k in np.unique(sweep.window[scorable & ~outside]):
        hits = detected & (sweep.window == k)
        total += max(float(sweep.weights[hits].max()), -profile.fn_weight) if hits.any() else -profile.fn_weight
    tp = int(np.sum(detected & ~outside))
    fp = int(np.sum(detected & outside))
    return ThresholdPoint(
        float(threshold), total, tp, int(np.sum(scorable & outside)) - fp, fp, int(np.sum(scorable & ~outside)) - tp
    )


def threshold_curve(
    anomaly_scores: Sequence[np.ndarray], sweeps: Sequence[FileSweep], profile: CostProfile
) -> ThresholdCurve:
    """Sweep all thresholds over one or more files at once.

    Parameters
    ----------
    anomaly_scores : sequence of arrays of shape (n_rows_f,)
        Each file's anomaly scores, in [0, 1].
    sweeps : sequence of FileSweep
        The same files' sweep scores (`sweep_file`), in the same order.
    profile : CostProfile
        Supplies the false-negative weight of a missed window.
    """
    if len(anomaly_scores) != len(sweeps):
        raise ValueError(f"got {len(anomaly_scores)} score arrays for {len(sweeps)} files")
    parts_a, parts_w, parts_g = [], [], []
    offset = 0
    for scores, sweep in zip(anomaly_scores, sweeps):
        scores = _check_scores(scores, sweep)
        keep = sweep.scorable
        window = sweep.window[keep]
        parts_a.append(scores[keep])
        parts_w.append(sweep.weights[keep])
        parts_g.append(np.where(window == NO_WINDOW, NO_WINDOW, window + offset))
        offset += len(sweep.weights)  # more than enough to keep window ids distinct
    a = np.concatenate(parts_a) if parts_a else np.zeros(0)
    w = np.concatenate(parts_w) if parts_w else np.zeros(0)
    g = np.concatenate(parts_g) if parts_g else np.zeros(0, dtype=np.int64)

    order = np.argsort(-a)  # highest score first; the order within ties does not change any recorded state
    a, w, g = a[order], w[order], g[order]
    in_window = g != NO_WINDOW
    n_windows = len(np.unique(g[in_window]))

    # Change of the total when each row becomes a detection: an FP adds its weight;
    # a window row raises its window's part from max(-fn, best so far) to the new max.
    delta = np.where(in_window, 0.0, w)
    idx = np.flatnonzero(in_window)
    if len(idx):
        by_window = np.argsort(g[idx], kind="stable")
        rows, groups, values = idx[by_window], g[idx][by_window], w[idx][by_window]
        first_of_group = np.r_[True, groups[1:] != groups[:-1]]
        running = np.maximum(_segmented_cummax(values, first_of_group), -profile.fn_weight)
        previous = np.where(first_of_group, -profile.fn_weight, np.r_[0.0, running[:-1]])
        delta[rows] = running - previous

    base = -profile.fn_weight * n_windows
    totals = base + np.r_[0.0, np.cumsum(delta)]
    tp_after = np.r_[0, np.cumsum(in_window)]
    fp_after = np.r_[0, np.cumsum(~in_window)]

    # NAB records a threshold each time the sweep reaches a new anomaly score,
    # holding the state after every row with that score.
    last_of_run = np.flatnonzero(np.r_[a[1:] != a[:-1], True]) if len(a) else np.zeros(0, dtype=int)
    thresholds = a[last_of_run]
    after = last_of_run + 1
    if len(a) == 0 or a[0] != START_THRESHOLD:
        thresholds = np.r_[START_THRESHOLD, thresholds]
        after = np.r_[0, after]
    n_in, n_out = int(in_window.sum()), int((~in_window).sum())
    return ThresholdCurve(
        thresholds=thresholds,
        scores=totals[after],
        tp=tp_after[after],
        tn=n_out - fp_after[after],
        fp=fp_after[after],
        fn=n_in - tp_after[after],
        _sorted_scores=a,
        _totals=totals,
        _tp_after=tp_after,
        _fp_after=fp_after,
    )


def _segmented_cummax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` restarting wherever ``starts`` is True."""
    out = values.copy()
    begin = np.flatnonzero(starts)
    end = np.r_[begin[1:], len(values)]
    for b, e in zip(begin, end):  # one iteration per window: a handful per file
        np.maximum.accumulate(out[b:e], out=out[b:e])
    return out


def legacy_row_scores(
    anomaly_scores: np.ndarray, data_file: NABDataFile, profile: CostProfile, threshold: float
) -> np.ndarray:
    """Per-row ``S(t)`` as written by NAB's pre-sweeper scorer (``Scorer.getScore``).

    At one threshold: each window's contribution (its first detection's score,
    or ``-fnWeight`` when missed) sits on the window's first row, each false
    positive's on its own row, zeros elsewhere. Windows are the rows with
    ``start <= timestamp <= end``; probationary rows are never detections.
    """
    scores = np.asarray(anomaly_scores, dtype=float)
    if scores.shape != (len(data_file),):
        raise ValueError(f"anomaly_scores must have shape ({len(data_file)},), got {scores.shape}")
    stamps = data_file.timestamps.as_unit("ns").asi8
    n = len(stamps)
    rows = np.arange(n)
    detected = (scores >= threshold) & (rows >= data_file.probationary_length)
    labels = data_file.labels.astype(bool)
    out = np.zeros(n)
    windows = [
        np.flatnonzero((stamps >= start.value) & (stamps <= end.value)) for start, end in data_file.windows
    ]
    for indices in windows:
        hits = indices[detected[indices]]
        if len(hits) == 0:
            out[indices[0]] = -profile.fn_weight
        else:
            position = -(indices[-1] - hits[0] + 1) / float(len(indices))
            out[indices[0]] = scaled_sigmoid(position) * profile.tp_weight / _MAX_TP
    false_positives = np.flatnonzero(detected & ~labels)
    window_ends = np.array([indices[-1] for indices in windows], dtype=np.int64)
    window_lengths = np.array([len(indices) for indices in windows], dtype=float)
    for i in false_positives:
        before = np.flatnonzero(window_ends < i)
        if len(before) == 0:
            out[i] = -profile.fp_weight
        else:
            k = before[np.argmin(i - window_ends[before])]
            position = abs(window_ends[k] - i) / (window_lengths[k] - 1.0)
            out[i] = scaled_sigmoid(position) * profile.fp_weight
    return out
