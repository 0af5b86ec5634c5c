"""The selective-update detector behind the NAB benchmark's streaming interface."""
from __future__ import annotations

import numpy as np

from .baselines import NABStreamDetector, check_series
from .likelihood import AnomalyLikelihood
from .numenta_likelihood import NumentaLikelihood
from .selective_update import SelectiveUpdateDetector
from .streaming import StreamScorer
from .spatial import SPATIAL_TOLERANCE, SpatialAnomaly
from .suppression import PeakSuppression

NAB_DETECTOR_DEFAULTS = dict(hidden_size=32, n_steps=40, window=32, burn_in=8, batch_size=32, warmup=10)
"""Detector settings used for NAB unless overridden (small, so a corpus runs in minutes)."""


class SelectiveUpdateNAB(NABStreamDetector):
    """``SelectiveUpdateDetector`` + ``StreamScorer`` + a likelihood (+ suppression, + spatial rule) for NAB.

    The detector is fitted on the probationary rows only (as NAB allows); then
    the whole file is streamed through the scorer (score, then learn, every
    row) and the anomaly likelihood (:class:`NumentaLikelihood`, NAB's own
    estimator, by default), whose log-score in [0, 1] is the NAB score, then,
    optionally, :class:`PeakSuppression` (a score is kept only where it beats
    every score of the previous ``suppression * probationary`` rows: one
    detection per burst, whatever the threshold), and last NAB's spatial rule
    (:class:`SpatialAnomaly`: 1.0 where a value leaves the range seen so far by
    more than 5 % of it). The defaults are NAB's own post-processing of its
    HTM detector, with NAB's constants. Row t uses rows up to t only.

    Parameters
    ----------
    seed : int, default 0
    normalizer_halflife : float, optional
        Online normalisation half-life (points); None keeps the probationary scaling.
    estimator : {"numenta", "running"}, default "numenta"
        :class:`NumentaLikelihood` with NAB's settings (learning period and
        estimation samples half the probationary period each), or
        :class:`AnomalyLikelihood` (running statistics from the training fit).
    likelihood : dict, optional
        Keyword arguments of the estimator's class, over those defaults.
    spatial_tolerance : float or None, default 0.05
        :class:`SpatialAnomaly`'s tolerance (NAB's ``SPATIAL_TOLERANCE``);
        None turns the spatial rule off. It is applied last, as in NAB.
    suppression : float or None, default None
        Suppression period as a multiple of the probationary length (NAB's
        probationary period, 15 % of the file, at most 750 rows, is the scale
        of a file's regular behaviour); None turns suppression off (the
        default since the ``numenta`` estimator, whose red-zone filter already
        reports a sustained anomaly once; 1.0 helped the ``running`` one).
    **detector_params
        Keyword arguments of :class:`SelectiveUpdateDetector`, over
        :data:`NAB_DETECTOR_DEFAULTS`.
    """

    name = "surnn"

    def __init__(self, seed: int = 0, normalizer_halflife: float | None = None, estimator: str = "numenta",
                 likelihood: dict | None = None, suppression: float | None = None,
                 spatial_tolerance: float | None = SPATIAL_TOLERANCE, **detector_params) -> None:
        if estimator not in ("numenta", "running"):
            raise ValueError(f"estimator must be 'numenta' or 'running'; got {estimator!r}")
        self.seed = seed
        self.normalizer_halflife = normalizer_halflife
        self.estimator = estimator
        self.likelihood = likelihood
        self.spatial_tolerance = spatial_tolerance
        if suppression is not None and not (isinstance(suppression, (int, float)) and suppression > 0):
            raise ValueError(f"suppression must be a number > 0 or None; got {suppression!r}")
        self.suppression = suppression
        self.detector_params = {**NAB_DETECTOR_DEFAULTS, **detector_params}

    def stream(self, values: np.ndarray, probationary: int) -> AnomalyLikelihood | NumentaLikelihood:
        """The fitted streaming pipeline for one file (before any row is streamed)."""
        values = check_series(values, probationary, min_probationary=2)
        detector = SelectiveUpdateDetector(**{**self.detector_params, "progress": False, "seed": self.seed})
        detector.fit(values[:probationary])
        scorer = StreamScorer(detector, normalizer_halflife=self.normalizer_halflife)
        if self.estimator == "running":
            return AnomalyLikelihood(scorer, **(self.likelihood or {}))
        learning = probationary // 2  # NAB's numenta detector: floor(probationary / 2)
        defaults = dict(learning_period=learning, estimation_samples=probationary - learning)
        return NumentaLikelihood(scorer, **{**defaults, **(self.likelihood or {})})

    def run(self, values: np.ndarray, probationary: int) -> np.ndarray:
        """Scores of shape (n,) in [0, 1]; row t depends on ``values[:t + 1]`` only."""
        values = check_series(values, probationary, min_probationary=2)
        stream = self.stream(values, probationary)
        if self.suppression is not None:
            stream = PeakSuppression(stream, period=max(1, round(self.suppression * probationary)))
        if self.spatial_tolerance is not None:
            stream = SpatialAnomaly(stream, tolerance=self.spatial_tolerance)
        return stream.process(values[:, None])[:, 0]
