"""Causal baseline detectors for NAB-style streaming evaluation.

Every detector implements `NABStreamDetector.run(values, probationary)`: it may
fit on the probationary rows ``values[:probationary]`` and must give every row
a score in [0, 1] that uses only ``values[:t + 1]`` (no look-ahead). NAB's
threshold sweep works on [0, 1], with one threshold shared by all files, so
raw scores are calibrated per file by `anomaly_likelihood`: robust z-units,
then the package's one anomaly likelihood (NAB's HTM estimator). Rows of the
probationary period score about 0.03 (probability 0.5).

Baselines (registered in :mod:`.registry` under these names):

* ``iforest``: PyOD's `IForest` on sliding windows of the last ``window`` values,
  fitted on the probationary windows.
* ``lstm``: PyOD's `LSTMAD` (``pyod.models.ts_lstm``, Malhotra et al. 2015): an
  LSTM forecaster of the next value trained on the probationary period; the
  score is the Mahalanobis distance of the forecast error.
* ``halfspacetrees``: river's `HalfSpaceTrees` on the last ``n_lags`` values,
  min-max scaled by river's `MinMaxScaler`; ``score_one`` then ``learn_one``
  at every row.

Another detector joins the benchmark by implementing `NABStreamDetector`
(or `CalibratedStreamDetector._raw_scores`) and adding a factory to
:data:`~sparsernn.detectors.nab.registry.DETECTORS`.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import ClassVar

import numpy as np
from ..stream.likelihood import likelihood_scores
from .corpus import NABCorpus


def check_series(values, probationary: int, min_probationary: int = 1) -> np.ndarray:
    """Validate a series and its probationary length; returns ``values`` as float array."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"values must be a 1-D array of shape (n,), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("values must be finite (found NaN or inf)")
    if not isinstance(probationary, (int, np.integer)):
        raise TypeError(f"probationary must be an int, got {type(probationary).__name__}")
    if not min_probationary <= probationary <= len(values):
        raise ValueError(
            f"probationary must be in [{min_probationary}, len(values)={len(values)}], got {probationary}"
        )
    return values


def lagged_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Array of shape (n, window): row t holds ``values[t - window + 1 .. t]``.

    Rows before ``window - 1`` are padded on the left with ``values[0]``, so row
    t never looks past t.
    """
    padded = np.r_[np.full(window - 1, values[0]), values]
    return np.lib.stride_tricks.sliding_window_view(padded, window).copy()


def anomaly_likelihood(
    raw: np.ndarray,
    probationary: int,
    warmup: int = 0,
    averaging_window: int = 10,
    historic_window: int = 8640,
    reestimation_period: int = 100,
) -> np.ndarray:
    """Turn causal raw scores (n,) into NAB-ready scores (n,) in [0, 1], causally.

    Raw scores are put in robust z-units (median and 1.4826 x MAD of the
    probationary raw scores after ``warmup``), then scored by the package's one
    anomaly likelihood (:func:`~sparsernn.detectors.stream.likelihood.likelihood_scores`,
    NAB's HTM estimator, the one :class:`AnomalyLikelihood` streams): the
    leading ``warmup`` rows are the learning period, the rest of the
    probationary rows the estimation samples. Probationary rows score the
    log-score of probability 0.5 (about 0.03); row t depends on ``raw[:t + 1]``
    only (and the probationary rows, for the z-units).
    """
    raw = np.asarray(raw, dtype=float)
    n = len(raw)
    if raw.ndim != 1:
        raise ValueError(f"raw must be a 1-D array of shape (n,); got shape {raw.shape}")
    if not 1 <= probationary <= n:
        raise ValueError(f"probationary must be in [1, len(raw)={n}], got {probationary}")
    first = warmup if probationary - warmup >= 10 else 0
    reference = raw[first:probationary]
    center = float(np.median(reference))
    scale = 1.4826 * float(np.median(np.abs(reference - center))) or float(np.std(reference)) or 1.0
    return likelihood_scores((raw - center) / scale, learning_period=first,
                             estimation_samples=probationary - first, averaging_window=averaging_window,
                             historic_window=max(historic_window, probationary - first),
                             reestimation_period=reestimation_period)


class NABStreamDetector(ABC):
    """A detector that scores one series causally, for NAB-style evaluation."""

    name: ClassVar[str] = "detector"

    @abstractmethod
    def run(self, values: np.ndarray, probationary: int, timestamps=None) -> np.ndarray:
        """Score every row of a series.

        Parameters
        ----------
        values : array of shape (n,)
            The series.
        probationary : int
            Rows ``[0, probationary)`` may be used for fitting; they are not scored.
        timestamps : DatetimeIndex or array of shape (n,), optional
            The rows' timestamps (NAB's may repeat or go back around
            daylight-saving changes); detectors that do not use them ignore them.

        Returns
        -------
        array of shape (n,) in [0, 1]
            The score of row t depends only on ``values[:t + 1]``.
        """


class CalibratedStreamDetector(NABStreamDetector):
    """A detector defined by causal raw scores, mapped to [0, 1] by `anomaly_likelihood`.

    Subclasses implement `_raw_scores` and say how many leading rows
    (`warmup`) have no meaningful raw score; they may override `calibrate`.
    """

    min_probationary: ClassVar[int] = 2

    @property
    def warmup(self) -> int:
        return 0

    @abstractmethod
    def _raw_scores(self, values: np.ndarray, probationary: int) -> np.ndarray:
        """Causal raw scores of shape (n,), higher is more anomalous."""

    def run(self, values: np.ndarray, probationary: int, timestamps=None) -> np.ndarray:
        values = check_series(values, probationary, self.min_probationary)
        raw = np.asarray(self._raw_scores(values, probationary), dtype=float)
        return self.calibrate(raw, probationary)

    def calibrate(self, raw: np.ndarray, probationary: int) -> np.ndarray:
        """Map causal raw scores of shape (n,) to [0, 1]."""
        return anomaly_likelihood(raw, probationary, self.warmup)


class IForestDetector(CalibratedStreamDetector):
    """PyOD isolation forest on sliding windows of the last ``window`` values.

    Parameters
    ----------
    window : int
        Number of past values (the current one included) in a feature vector.
    n_estimators : int
        Number of trees.
    seed : int
        Random seed of the forest.
    """

    name = "iforest"

    def __init__(self, window: int = 24, n_estimators: int = 100, seed: int = 0):
        self.window = window
        self.n_estimators = n_estimators
        self.seed = seed

    @property
    def warmup(self) -> int:
        return self.window - 1

    def _raw_scores(self, values: np.ndarray, probationary: int) -> np.ndarray:
        from pyod.models.iforest import IForest

        windows = lagged_windows(values, self.window)
        model = IForest(n_estimators=self.n_estimators, random_state=self.seed)
        model.fit(windows[:probationary])
        return model.decision_function(windows)


class LSTMDetector(CalibratedStreamDetector):
    """PyOD's LSTMAD forecaster trained on the probationary period.

    Values are standardised with the probationary mean and deviation. The
    first ``window`` rows have no forecast (LSTMAD fills them with its
    training threshold). The seed drives torch's generator inside a forked
    RNG state, so the caller's global torch RNG is left untouched. Torch runs
    on ``n_threads`` intra-op threads during the call (restored afterwards):
    a model this small is fastest on one, and several threads on busy cores
    can be a hundred times slower.
    """

    name = "lstm"

    def __init__(
        self,
        window: int = 25,
        hidden_size: int = 32,
        n_layers: int = 1,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        n_threads: int | None = 1,
        seed: int = 0,
    ):
        self.window = window
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_threads = n_threads
        self.seed = seed

    @property
    def warmup(self) -> int:
        return self.window

    def _raw_scores(self, values: np.ndarray, probationary: int) -> np.ndarray:
        import torch
        from pyod.models.ts_lstm import LSTMAD

        if probationary < self.window + 10:
            raise ValueError(
                f"LSTMDetector needs probationary >= window + 10 = {self.window + 10} rows to train, "
                f"got probationary={probationary}"
            )
        train = values[:probationary]
        scale = float(train.std()) or 1.0
        standardized = (values - float(train.mean())) / scale
        model = LSTMAD(
            window_size=self.window, hidden_size=self.hidden_size, n_layers=self.n_layers,
            epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
        )
        threads = torch.get_num_threads()
        try:
            if self.n_threads is not None:
                torch.set_num_threads(self.n_threads)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model.fit(standardized[:probationary])
            return model.decision_function(standardized)
        finally:
            torch.set_num_threads(threads)


class HalfSpaceTreesDetector(CalibratedStreamDetector):
    """river's HalfSpaceTrees on the last ``n_lags`` values, min-max scaled online.

    At each row the pipeline first scores, then learns the row, so the score
    of row t depends on rows up to t only. HalfSpaceTrees scores 0 until its
    first reference window (``window_size`` rows) is full.
    """

    name = "halfspacetrees"

    def __init__(
        self, n_lags: int = 5, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 0
    ):
        self.n_lags = n_lags
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed

    @property
    def warmup(self) -> int:
        return self.window_size

    def _raw_scores(self, values: np.ndarray, probationary: int) -> np.ndarray:
        from river import anomaly, compose, preprocessing

        model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(
                n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
            ),
        )
        rows = lagged_windows(values, self.n_lags).tolist()
        names = [f"lag{k}" for k in range(self.n_lags - 1, -1, -1)]
        raw = np.empty(len(values))
        for t, row in enumerate(rows):
            features = dict(zip(names, row))
            raw[t] = model.score_one(features)
            model.learn_one(features)
        return raw


def _takes_timestamps(detector) -> bool:
    """Whether ``detector.run`` accepts ``timestamps=`` (detectors written before it was added do not)."""
    parameters = inspect.signature(detector.run).parameters
    return "timestamps" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def run_corpus(
    factory: Callable[[int], NABStreamDetector],
    corpus: NABCorpus,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, np.ndarray]:
    """Stream every file of ``corpus`` through a fresh detector ``factory(seed)``.

    Detectors whose ``run`` takes ``timestamps=`` get the file's timestamps
    (a DatetimeIndex of shape (n_rows,)). Returns ``{name: scores}``, each of
    shape (n_rows,) in [0, 1]. ``progress``
    wraps the iteration over file names (e.g. ``tqdm``).
    """
    names: Iterable[str] = list(corpus)
    if progress is not None:
        names = progress(names)
    out = {}
    for name in names:
        data_file = corpus[name]
        detector = factory(seed)
        extra = {"timestamps": data_file.timestamps} if _takes_timestamps(detector) else {}
        scores = np.asarray(detector.run(data_file.values.to_numpy(), data_file.probationary_length, **extra),
                            dtype=float)
        label = getattr(detector, "name", type(detector).__name__)
        if scores.shape != (len(data_file),):
            raise ValueError(f"{label} returned shape {scores.shape} for {name!r}, expected ({len(data_file)},)")
        if not np.all(np.isfinite(scores)) or scores.min() < 0.0 or scores.max() > 1.0:
            raise ValueError(f"{label} returned scores outside [0, 1] (or NaN) for {name!r}")
        out[name] = scores
    return out
