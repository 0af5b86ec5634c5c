"""``RiverDetector``: the stream scorer as a river ``AnomalyDetector`` (river's dict protocol).

river estimators take one point as a dict of features and follow river's
conventions: ``learn_one(x) -> None``, ``score_one(x) -> float`` (never None,
callable before any learning), parameters stored as given so ``clone()``
rebuilds a fresh estimator, features that come and go between points handled,
and the input dict never kept or changed. :class:`RiverDetector` gives one
stream of a :class:`~sparsernn.detectors.stream.scorer.StreamScorer` that face,
so it runs inside ``river.compose`` pipelines and ``river.anomaly``'s
``ThresholdFilter`` / ``QuantileFilter`` and passes ``river.checks``
(docs/river.md says which checks, and why one family is run on a local stream).

Requires the optional dependency ``river`` (``pip install 'sparsernn[baselines]'``).
"""
from __future__ import annotations

import math

import numpy as np
from river import base
from sklearn.base import clone as sklearn_clone
from sklearn.utils.validation import check_is_fitted
from sklearn.exceptions import NotFittedError

from ..checks import check_int, check_number
from ..selective_update import SelectiveUpdateDetector
from .online import OnlineLearning
from .scorer import StreamScorer

MISSING = ("ffill", "raise")
UNKNOWN = ("ignore", "raise")


def _key_order(key) -> tuple[str, str]:
    """Sort key of a feature name: channels are in sorted order, whatever order a dict lists them in."""
    return str(key), type(key).__name__


class RiverDetector(base.AnomalyDetector):
    """A selective-update RNN anomaly detector with river's ``AnomalyDetector`` protocol.

    ``score_one(x)`` is the surprise of the point ``x`` (a dict of numbers)
    under the forecast the model made after the previous learned point, as
    :meth:`StreamScorer.score_one` computes it; it changes nothing.
    ``learn_one(x)`` advances the stream by ``x`` (one recurrent step). One
    adapter is one stream.

    Where the model comes from:

    * ``detector`` is a **fitted** :class:`SelectiveUpdateDetector`: it is used
      at once (its ``warmup`` first points score 0.0); ``grace_period`` is not used.
    * ``detector`` is None or **unfitted** (the river way, learning from zero):
      the first ``grace_period`` learned points are kept; at the last of them a
      copy of ``detector`` (``sklearn.base.clone``; None:
      ``SelectiveUpdateDetector(progress=False)``) is fitted on them, the
      stream is replayed through them, and scoring starts. Until then
      ``score_one`` returns 0.0, as river's ``GaussianScorer`` does in its grace period.
      The fitted copy is ``detector_``; ``detector`` is left as given.

    Features and channels: channel ``i`` of the model reads feature
    ``features[i]``. Without ``features`` the order is the fitted detector's
    column names (``feature_names_in_``), else the sorted keys of the first
    learned point (sorted, so a dict's key order never matters). Later points:

    * a key the channels do not know is ignored (``unknown="ignore"``, river's
      convention: models ignore features they cannot use) or raises a ``ValueError``
      (``unknown="raise"``);
    * a channel whose key is absent, or whose value is None, takes the last
      learned value of that channel (``missing="ffill"``, a forward fill; the
      fitted detector's median before any) or raises a ``ValueError``
      (``missing="raise"``). NaN / inf and non-numbers always raise
      (``ValueError`` / ``TypeError``), as everywhere in this package.

    Parameters
    ----------
    detector : SelectiveUpdateDetector, optional
        Fitted (used as is) or unfitted (a template fitted after the grace period).
    grace_period : int, default 256
        Points learned before the model is fitted (unfitted ``detector`` only); at least 2.
    features : tuple, optional
        The feature of each channel, in order.
    missing : {"ffill", "raise"}, default "ffill"
    unknown : {"ignore", "raise"}, default "ignore"
    normalizer_halflife : float, optional
        The stream scorer's online normalisation (:class:`StreamScorer`).
    learn : OnlineLearning, dict or bool, optional
        The stream scorer's online learning of the weights (:class:`StreamScorer`).

    Attributes
    ----------
    detector_ : SelectiveUpdateDetector or None
        The fitted detector in use (None during the grace period).
    scorer_ : StreamScorer or None
        The stream (None during the grace period).
    features_ : list or None
        The feature of each channel, once fixed.
    n_learned_ : int
        Points learned.

    Examples
    --------
    >>> import math
    >>> from river import anomaly, compose, preprocessing
    >>> model = compose.Pipeline(
    ...     preprocessing.StandardScaler(),
    ...     anomaly.ThresholdFilter(
    ...         RiverDetector(SelectiveUpdateDetector(n_steps=20, progress=False), grace_period=100),
    ...         threshold=3.0))
    >>> alarms = []
    >>> for t in range(400):
    ...     x = {"a": math.sin(t / 5), "b": math.cos(t / 5) + (4.0 if t == 300 else 0.0)}
    ...     score = model.score_one(x)
    ...     if model["ThresholdFilter"].classify(score):
    ...         alarms.append(t)
    ...     model.learn_one(x)
    >>> alarms
    [300]
    """

    def __init__(self, detector: SelectiveUpdateDetector | None = None, grace_period: int = 256,
                 features: tuple | None = None, missing: str = "ffill", unknown: str = "ignore",
                 normalizer_halflife: float | None = None, learn=None) -> None:
        if detector is not None and not isinstance(detector, SelectiveUpdateDetector):
            raise TypeError(f"detector must be a SelectiveUpdateDetector (fitted or not) or None; "
                            f"got {type(detector).__name__}")
        check_int("grace_period", grace_period, 2)
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}; got {missing!r}")
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {UNKNOWN}; got {unknown!r}")
        if features is not None and (isinstance(features, (str, bytes)) or len(set(features)) != len(features)
                                     or not len(features)):
            raise ValueError(f"features must be a non-empty tuple of distinct feature names; got {features!r}")
        if normalizer_halflife is not None:  # checked now, not after the grace period
            check_number("normalizer_halflife", normalizer_halflife, 0.0, low_open=True)
        OnlineLearning.coerce(learn)
        self.detector = detector
        self.grace_period = grace_period
        self.features = features
        self.missing = missing
        self.unknown = unknown
        self.normalizer_halflife = normalizer_halflife
        self.learn = learn
        self.detector_: SelectiveUpdateDetector | None = None
        self.scorer_: StreamScorer | None = None
        self.features_: list | None = None
        self.n_learned_ = 0
        self._buffer: list[np.ndarray] = []
        self._last: np.ndarray | None = None
        if detector is not None and _is_fitted(detector):
            self._start(detector)

    # ------------------------------------------------------------ river's protocol
    def learn_one(self, x: dict) -> None:
        """Advance the stream by the point ``x`` (during the grace period: keep it, and fit at its end)."""
        if self.features_ is None:
            self.features_ = self._first_features(x)
        values = self._values(x, self.features_, learning=True)
        self._last = values
        self.n_learned_ += 1
        if self.scorer_ is not None:
            self.scorer_.learn_one(float(values[0]) if len(values) == 1 else values)
            return
        self._buffer.append(values)
        if len(self._buffer) >= self.grace_period:
            self._fit_buffer()

    def score_one(self, x: dict) -> float:
        """Surprise of ``x`` (higher is more anomalous; 0.0 until the model is fitted); changes nothing."""
        keys = self.features_
        if keys is None:  # nothing learned yet: the channels this point would fix (fixing nothing)
            keys = self._first_features(x)
        values = self._values(x, keys)  # a bad point is refused in the grace period too
        if self.scorer_ is None:
            return 0.0
        return float(self.scorer_.score_one(float(values[0]) if len(values) == 1 else values))

    # ------------------------------------------------------------ river's checks
    @classmethod
    def _unit_test_params(cls):
        yield {"detector": SelectiveUpdateDetector(hidden_size=8, n_steps=20, batch_size=8, window=24, burn_in=4,
                                                   warmup=5, progress=False),
               "grace_period": 60}

    # ------------------------------------------------------------ internals
    def _names(self) -> list | None:
        """The channels' feature names the fitted detector knows (``features`` first), or None."""
        if self.features is not None:
            return list(self.features)
        names = getattr(self.detector_, "feature_names_in_", None)
        return None if names is None else list(names)

    def _first_features(self, x: dict) -> list:
        if not isinstance(x, dict):
            raise TypeError(f"x must be a dict of features (river's convention); got {type(x).__name__}")
        names = self._names()
        if names is None:
            names = sorted(x, key=_key_order)
            if not names:
                raise ValueError("x has no features: the first point learned fixes the channels, so it needs "
                                 "at least one")
        if self.detector_ is not None and len(names) != self.detector_.n_channels_:
            raise ValueError(f"the detector was fitted on {self.detector_.n_channels_} channel(s) but the "
                             f"features are {names} ({len(names)}): pass features=(...) naming one feature "
                             f"per channel, in the fitted order")
        return names

    def _values(self, x: dict, keys: list, learning: bool = False) -> np.ndarray:
        """The point's value of each channel of ``keys`` (float64, (n_channels,)), after the missing /
        unknown policy."""
        if not isinstance(x, dict):
            raise TypeError(f"x must be a dict of features (river's convention); got {type(x).__name__}")
        if self.unknown == "raise":
            known = set(keys)
            unknown = [k for k in x if k not in known]
            if unknown:
                raise ValueError(f"x has unknown feature(s) {unknown}; the channels are {keys} "
                                 f"(unknown='ignore' ignores them)")
        values = np.empty(len(keys))
        for i, key in enumerate(keys):
            value = x.get(key)
            if value is None:
                if self.missing == "raise":
                    raise ValueError(f"x has no value for feature {key!r}; the channels are {keys} "
                                     f"(missing='ffill' repeats the last learned value)")
                values[i] = self._fill(i, key, learning)
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"x[{key!r}] must be a number; got {value!r} ({type(value).__name__})")
            if not math.isfinite(value):
                raise ValueError(f"x[{key!r}] must be finite; got {value} (NaN and inf are rejected; a missing "
                                 f"value is an absent key or None)")
            values[i] = value
        return values

    def _fill(self, channel: int, key, learning: bool) -> float:
        if self._last is not None:
            return float(self._last[channel])
        if self.detector_ is not None:
            return float(self.detector_.center_[channel])  # fitted detector, nothing learned yet
        if not learning:
            return math.nan  # scored in the grace period: 0.0 whatever the value
        raise ValueError(f"x has no value for feature {key!r} and no earlier point to "
                         f"repeat: the first point learned needs every feature of features={self.features!r}")

    def _start(self, detector: SelectiveUpdateDetector) -> None:
        self.detector_ = detector
        self.scorer_ = StreamScorer(detector, normalizer_halflife=self.normalizer_halflife, learn=self.learn)

    def _fit_buffer(self) -> None:
        template = self.detector if self.detector is not None else SelectiveUpdateDetector(progress=False)
        points = np.stack(self._buffer)
        self._start(sklearn_clone(template).fit(points))
        self.scorer_.process(points[:, None, :])  # the stream's state at the end of the grace period
        self._buffer = []


def _is_fitted(detector) -> bool:
    try:
        check_is_fitted(detector, ["model_", "center_", "scale_"])
    except NotFittedError:
        return False
    return True
