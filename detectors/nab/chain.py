"""The selective-update detector behind the NAB benchmark's streaming interface."""
from __future__ import annotations

import inspect

import numpy as np

from .baselines import NABStreamDetector, check_series
from ..checks import check_int, check_number, check_seed, check_weight
from ..stream.likelihood import AnomalyLikelihood
from ..stream.novelty import WindowNovelty
from ..stream.seasonal import SeasonalSurprise, rows_per_season, season_periods
from ..selective_update import SelectiveUpdateDetector
from ..stream.online import OnlineLearning
from ..horizons import check_horizon
from ..window_surprise import check_windows
from ..stream.scorer import StreamScorer
from ..stream.spatial import SPATIAL_TOLERANCE, SpatialAnomaly
from ..stream.suppression import PeakSuppression

NAB_DETECTOR_DEFAULTS = dict(hidden_size=32, n_steps=40, window=32, burn_in=8, batch_size=32, warmup=10)
"""Detector settings used for NAB unless overridden (small, so a corpus runs in minutes)."""


class SelectiveUpdateNAB(NABStreamDetector):
    """``SelectiveUpdateDetector`` + ``StreamScorer`` (+ seasonal surprise) + likelihood (+ window novelty)
    (+ suppression) + spatial rule.

    The detector is fitted on the probationary rows only (as NAB allows); then
    the whole file is streamed (score, then learn, every row) through the chain
    ``SpatialAnomaly(PeakSuppression(WindowNovelty(AnomalyLikelihood(SeasonalSurprise(StreamScorer)))))``:
    optionally :class:`SeasonalSurprise` adds the surprise of the residual
    against one day earlier (the period from the probationary rows'
    timestamps); :class:`AnomalyLikelihood` (NAB's estimator: learning period
    and estimation samples half the probationary period each) turns surprises
    into NAB's log-score in [0, 1]; optionally (on by default)
    :class:`WindowNovelty` takes the maximum of that score times
    ``surprise_weight`` and a second likelihood (same settings), of the distance from the recent window
    (``novelty_window`` blocks) to its nearest earlier window; optionally :class:`PeakSuppression` keeps a
    score only where it beats every score of the previous ``suppression *
    probationary`` rows; last NAB's spatial rule (:class:`SpatialAnomaly`:
    1.0 where a value leaves the range seen so far by more than 5 % of it).
    Row t uses rows up to t only (and the probationary rows' timestamps).

    Parameters
    ----------
    seed : int, default 0
    normalizer_halflife : float, optional
        Online normalisation half-life (points); None keeps the probationary scaling.
    likelihood : dict, optional
        Keyword arguments of :class:`AnomalyLikelihood`, over NAB's learning
        period / estimation samples.
    seasonal : bool, default True
        Add :class:`SeasonalSurprise` (period: rows per day from the median
        step of the probationary rows' timestamps, or ``seasonal_period``;
        ``memory``: the probationary length). On by default: +6 NAB standard on
        the 35 files (docs/detectors.md), a knob chosen on those files.
    seasonal_period : int, optional
        Rows per season for every file (instead of the timestamps).
    spatial_tolerance : float or None, default 0.05
        :class:`SpatialAnomaly`'s tolerance (NAB's ``SPATIAL_TOLERANCE``);
        None turns the spatial rule off. It is applied last, as in NAB.
    novelty : bool, default True
        Add :class:`WindowNovelty` after the likelihood: the score becomes the
        maximum of the likelihood score and the likelihood (same NAB
        settings) of the distance from the recent window to its nearest
        earlier window. On by default: chosen on the 35 files (docs/detectors.md).
    novelty_window : int, default 8
        Blocks per window embedding.
    novelty_blocks : int, default 208
        Blocks per probationary period: the block is
        ``max(1, round(probationary / novelty_blocks))`` rows.
    bounded_surprise : bool, default False
        The surprise's likelihood reads ``1 - exp(-surprise)`` (:class:`AnomalyLikelihood`'s
        ``bounded``), so one very large surprise cannot make an alarm on its own; the novelty's
        likelihood is unchanged. Off by default (docs/nab_forecaster.md, "A bounded surprise").
    novelty_memory : int, default 8192
        Embeddings each stream's novelty keeps (the last ``novelty_memory`` windows, a ring): each
        row is compared with up to this many. A NAB file of ``n`` rows stores about ``n / block``,
        at most ``10 * novelty_blocks`` (2080) with the probationary 15 %, so on NAB files any value
        from 2080 up scores the same; on longer streams a smaller memory forgets sooner and searches
        fewer windows (docs/chain_cost_batched.md).
    surprise_weight : float in [0, 1], default 0.8
        Factor on the surprise's likelihood score before the maximum with the
        novelty's (:class:`WindowNovelty`'s ``inner_weight``); used only with
        ``novelty=True``. Below 1 the (seed-free) novelty outranks the
        forecaster's surprise near the top of the scale, which makes the score
        much less dependent on the forecaster's seed: 3-seed mean NAB standard
        69.95 (seeds 0 / 1 / 2: 69.96 / 70.09 / 69.81) against 66.68 with 1.0
        on the 35 files (docs/detectors.md), a knob chosen on those files.
    suppression : float or None, default None
        Suppression period as a multiple of the probationary length; None
        turns suppression off (the default: the likelihood's red-zone filter
        already reports a sustained anomaly once).
    rhythm_seasons : sequence of Timedelta-likes, optional
        Rhythm neurons at the series' seasons (needs ``update_gate="rhythm"``): per file the
        rhythm's periods are these seasons in rows, from the median step of the probationary
        rows' timestamps (:func:`~sparsernn.detectors.stream.seasonal.season_periods`), passed
        as ``layer_options["rhythm_periods"]``; e.g. ``["1D", "7D"]``. The rhythm's time index
        is the row from the file's start, in training (each window starts at its row) and
        streaming, so the phase follows the clock as long as rows are evenly spaced (a gap
        shifts it). A season may be longer than the probationary rows (the forecaster then
        trains on part of a cycle); one shorter than 2 rows, or a file without timestamps,
        raises ``ValueError``. Add ``layer_options={"rhythm_learn_periods": False}`` to keep
        the periods through training. None (default): the layer's own periods.
    learn : dict, optional
        Online learning of the forecaster while each file streams: keyword arguments of
        :class:`~sparsernn.detectors.stream.online.OnlineLearning` (``{}``: its defaults),
        checked here; None (default): the forecaster keeps its fitted weights.
    **detector_params
        Keyword arguments of :class:`SelectiveUpdateDetector`, over
        :data:`NAB_DETECTOR_DEFAULTS`; e.g. ``surprise_windows=[8, 32]`` makes the forecaster's
        surprise window-level (the maximum of the one-step surprise and the windows' statistics,
        :mod:`~sparsernn.detectors.window_surprise`; off by default); ``forecast_horizon=16`` makes
        the forecaster predict the next 16 rows and score each row by its mean surprise under the
        forecasts made for it (:mod:`~sparsernn.detectors.horizons`; 1 by default).
    """

    name = "surnn"

    def __init__(self, seed: int = 0, normalizer_halflife: float | None = None, likelihood: dict | None = None,
                 seasonal: bool = True, seasonal_period: int | None = None, suppression: float | None = None,
                 spatial_tolerance: float | None = SPATIAL_TOLERANCE, novelty: bool = True,
                 novelty_window: int = 8, novelty_blocks: int = 208, novelty_memory: int = 8192,
                 surprise_weight: float = 0.8, bounded_surprise: bool = False,
                 learn: dict | None = None, rhythm_seasons=None, **detector_params) -> None:
        if not isinstance(seasonal, bool):
            raise TypeError(f"seasonal must be a bool; got {seasonal!r}")
        if not isinstance(novelty, bool):
            raise TypeError(f"novelty must be a bool; got {novelty!r}")
        if not isinstance(bounded_surprise, bool):
            raise TypeError(f"bounded_surprise must be a bool; got {bounded_surprise!r}")
        self.bounded_surprise = bounded_surprise
        novelty_window, novelty_blocks = check_int("novelty_window", novelty_window, 1), \
            check_int("novelty_blocks", novelty_blocks, 1)
        self.novelty_memory = check_int("novelty_memory", novelty_memory, 1)
        self.surprise_weight = check_weight("surprise_weight", surprise_weight)
        if seasonal_period is not None:
            seasonal_period = check_int("seasonal_period", seasonal_period, 1)
        if suppression is not None:
            suppression = check_number("suppression", suppression, 0.0, low_open=True)
        if normalizer_halflife is not None:
            normalizer_halflife = check_number("normalizer_halflife", normalizer_halflife, 0.0, low_open=True)
        if spatial_tolerance is not None:
            spatial_tolerance = check_number("spatial_tolerance", spatial_tolerance, 0.0)
        self.seed = check_seed("seed", seed)
        if learn is not None and not isinstance(learn, dict):
            raise TypeError(f"learn must be None or a dict of OnlineLearning settings; got {learn!r}")
        self.learn = None if learn is None else OnlineLearning.coerce(learn).settings()
        self.normalizer_halflife = normalizer_halflife
        self.likelihood = likelihood
        self.seasonal = seasonal
        self.seasonal_period = seasonal_period
        self.spatial_tolerance = spatial_tolerance
        self.suppression = suppression
        self.novelty = novelty
        self.novelty_window = novelty_window
        self.novelty_blocks = novelty_blocks
        known = set(inspect.signature(SelectiveUpdateDetector).parameters) - {"seed", "progress"}
        unknown = sorted(set(detector_params) - known)
        if unknown:  # the detector is built per file; refuse a misspelt setting before any file runs
            raise TypeError(f"unknown settings {unknown}: neither SelectiveUpdateNAB's nor "
                            f"SelectiveUpdateDetector's (without seed, progress) keyword arguments")
        check_windows(detector_params.get("surprise_windows"))  # before any file runs
        if check_horizon(detector_params.get("forecast_horizon", 1)) > 1 and learn is not None:
            raise ValueError(f"learn (online learning) does not support a multi-horizon forecaster; got learn={learn!r} "
                             f"with forecast_horizon={detector_params['forecast_horizon']!r}")
        if rhythm_seasons is not None:
            if detector_params.get("update_gate") != "rhythm":
                raise ValueError(f"rhythm_seasons needs update_gate='rhythm'; got "
                                 f"update_gate={detector_params.get('update_gate', 'event')!r}")
            if "rhythm_periods" in (detector_params.get("layer_options") or {}):
                raise ValueError("rhythm_seasons and layer_options['rhythm_periods'] both set the rhythm's periods; "
                                 "give one")
            season_periods(["2000-01-01", "2000-01-01 00:00:00.000000001"], rhythm_seasons)  # their form, now
        self.rhythm_seasons = None if rhythm_seasons is None else list(rhythm_seasons)
        self.detector_params = {**NAB_DETECTOR_DEFAULTS, **detector_params}

    def pipeline(self, values: np.ndarray, probationary: int, timestamps=None):
        """The fitted streaming chain for one file (before any row is streamed).

        ``timestamps`` (n,) datetime-likes are used only for the seasonal
        period (from the probationary rows); they may repeat or go back (NAB's
        files do around daylight-saving changes), since they are not streamed.
        """
        values = check_series(values, probationary, min_probationary=2)
        period = None
        if self.seasonal:
            period = self.seasonal_period
            if period is None:
                if timestamps is None:
                    raise ValueError("timestamps are needed for the seasonal period (or pass seasonal_period= "
                                     "or seasonal=False)")
                if len(timestamps) != len(values):
                    raise ValueError(f"timestamps has {len(timestamps)} entries for {len(values)} values")
                period = rows_per_season(timestamps[:probationary])
        params = dict(self.detector_params)
        if self.rhythm_seasons is not None:
            if timestamps is None or len(timestamps) != len(values):
                raise ValueError(f"rhythm_seasons needs the file's timestamps (one per value); got "
                                 f"{None if timestamps is None else len(timestamps)} for {len(values)} values")
            periods = season_periods(timestamps[:probationary], self.rhythm_seasons)
            params["layer_options"] = {**(params.get("layer_options") or {}), "rhythm_periods": list(periods)}
        detector = SelectiveUpdateDetector(**{**params, "progress": False, "seed": self.seed})
        detector.fit(values[:probationary])
        return self.chain(detector, probationary, period)

    def chain(self, detector: SelectiveUpdateDetector, probationary: int, period: int | None = None):
        """The streaming chain around a fitted ``detector`` (what :meth:`pipeline` streams a file through).

        ``probationary`` sets the likelihoods' periods, the seasonal memory and
        the novelty's block; ``period`` (rows per season) is needed with
        ``seasonal=True``. The chain serves any number of streams (e.g.
        ``scripts/bench_stream.py --chain`` runs 1000 through it).
        """
        probationary = check_int("probationary", probationary, 2)
        stream = StreamScorer(detector, normalizer_halflife=self.normalizer_halflife, learn=self.learn)
        if self.seasonal:
            if period is None:
                raise ValueError("period (rows per season) is needed with seasonal=True")
            stream = SeasonalSurprise(stream, period=check_int("period", period, 1), memory=probationary)
        learning = probationary // 2  # NAB's numenta detector: floor(probationary / 2)
        defaults = dict(learning_period=learning, estimation_samples=probationary - learning)
        settings = {**defaults, **(self.likelihood or {})}
        stream = AnomalyLikelihood(stream, **settings, bounded=self.bounded_surprise)
        if self.novelty:
            block = max(1, round(probationary / self.novelty_blocks))
            stream = WindowNovelty(stream, block=block, window=self.novelty_window, memory=self.novelty_memory,
                                   inner_weight=self.surprise_weight,
                                   **{k: v for k, v in settings.items() if k != "alarm_threshold"})
        if self.suppression is not None:
            stream = PeakSuppression(stream, period=max(1, round(self.suppression * probationary)))
        if self.spatial_tolerance is not None:
            stream = SpatialAnomaly(stream, tolerance=self.spatial_tolerance)
        return stream

    def run(self, values: np.ndarray, probationary: int, timestamps=None) -> np.ndarray:
        """Scores of shape (n,) in [0, 1]; row t depends on ``values[:t + 1]`` only."""
        values = check_series(values, probationary, min_probationary=2)
        return self.pipeline(values, probationary, timestamps).process(values[:, None])[:, 0]
