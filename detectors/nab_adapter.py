"""The selective-update detector behind the NAB benchmark's streaming interface."""
from __future__ import annotations

import numpy as np

from .baselines import NABStreamDetector, check_series
from .likelihood import AnomalyLikelihood
from .selective_update import SelectiveUpdateDetector
from .streaming import StreamScorer
from .suppression import PeakSuppression

NAB_DETECTOR_DEFAULTS = dict(hidden_size=32, n_steps=40, window=32, burn_in=8, batch_size=32, warmup=10)
"""Detector settings used for NAB unless overridden (small, so a corpus runs in minutes)."""


class SelectiveUpdateNAB(NABStreamDetector):
    """``SelectiveUpdateDetector`` + ``StreamScorer`` + ``AnomalyLikelihood`` (+ ``PeakSuppression``) for NAB.

    The detector is fitted on the probationary rows only (as NAB allows); then
    the whole file is streamed through the scorer (score, then learn, every
    row) and the anomaly likelihood, whose log-score in [0, 1] is the NAB
    score, after :class:`PeakSuppression` (a score is kept only where it beats
    every score of the previous ``suppression * probationary`` rows: one
    detection per burst, whatever the threshold). Row t uses rows up to t only.

    Parameters
    ----------
    seed : int, default 0
    normalizer_halflife : float, optional
        Online normalisation half-life (points); None keeps the probationary scaling.
    likelihood : dict, optional
        Keyword arguments of :class:`AnomalyLikelihood`.
    suppression : float or None, default 1.0
        Suppression period as a multiple of the probationary length (NAB's
        probationary period, 15 % of the file, at most 750 rows, is the scale
        of a file's regular behaviour); None turns suppression off.
    **detector_params
        Keyword arguments of :class:`SelectiveUpdateDetector`, over
        :data:`NAB_DETECTOR_DEFAULTS`.
    """

    name = "surnn"

    def __init__(self, seed: int = 0, normalizer_halflife: float | None = None, likelihood: dict | None = None,
                 suppression: float | None = 1.0, **detector_params) -> None:
        self.seed = seed
        self.normalizer_halflife = normalizer_halflife
        self.likelihood = likelihood
        if suppression is not None and not (isinstance(suppression, (int, float)) and suppression > 0):
            raise ValueError(f"suppression must be a number > 0 or None; got {suppression!r}")
        self.suppression = suppression
        self.detector_params = {**NAB_DETECTOR_DEFAULTS, **detector_params}

    def stream(self, values: np.ndarray, probationary: int) -> AnomalyLikelihood:
        """The fitted streaming pipeline for one file (before any row is streamed)."""
        values = check_series(values, probationary, min_probationary=2)
        detector = SelectiveUpdateDetector(**{**self.detector_params, "progress": False, "seed": self.seed})
        detector.fit(values[:probationary])
        scorer = StreamScorer(detector, normalizer_halflife=self.normalizer_halflife)
        return AnomalyLikelihood(scorer, **(self.likelihood or {}))

    def run(self, values: np.ndarray, probationary: int) -> np.ndarray:
        """Scores of shape (n,) in [0, 1]; row t depends on ``values[:t + 1]`` only."""
        values = check_series(values, probationary, min_probationary=2)
        stream = self.stream(values, probationary)
        if self.suppression is not None:
            stream = PeakSuppression(stream, period=max(1, round(self.suppression * probationary)))
        return stream.process(values[:, None])[:, 0]
