"""``SelectiveUpdateDetector``: a PyOD detector built on a selective-update recurrent forecaster."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from pyod.models.base import BaseDetector
from scipy.special import erf
from sklearn.utils.validation import check_is_fitted

from ..core.inference import InferenceStepper
from .forecaster import GaussianForecaster, surprise
from .horizons import check_horizon, horizon_surprise
from .window_surprise import check_windows, standardized_residuals, window_surprise
from .checks import MAX_SEED, check_int as _check_int, check_number, check_positive as _check_positive, check_seed
from .normalization import clip_units, robust_center_scale
from .series_input import SeriesInput, as_series, check_feature_names, feature_names_of
from .training import train_forecaster


class SelectiveUpdateDetector(BaseDetector):
    """Time-series anomaly detector: a selective-update RNN forecasts the next
    observation's distribution; the anomaly score is the surprise of what came.

    A core :class:`~sparsernn.core.SparseRecurrent` layer (a GRU whose neurons
    open on informative inputs, by default) reads the series scaled by its
    median and inter-quartile range, and a linear head predicts the mean and
    variance of the next observation. The score of timestamp ``t`` is
    ``0.5 * mean_c (u_t,c - mu_t,c)^2 / var_t,c``: the Gaussian negative
    log-likelihood of ``u_t`` in excess of its minimum under the forecast made
    at ``t - 1``. It uses data up to ``t`` only; the first ``warmup``
    timestamps, which have too little history, score ``0.0`` (the lowest
    possible score).

    Parameters
    ----------
    hidden_size : int, default 32
        Neurons of the recurrent layer.
    cell : {"gru", "lstm", "elman"}, default "gru"
    update_gate : {"event", "rhythm", None}, default "event"
        The suRNN switch (None: every neuron updates at every step).
    density_ih, density_hh : float in (0, 1], default 1.0
        Static block sparsity of the input and recurrent weights.
    router_keep : float or (float, float), optional
        DS-RNN input-dependent channel routing.
    layer_options : dict, optional
        Any further :class:`~sparsernn.core.SparseRecurrent` keyword
        (``rhythm_frequencies``, ``target_update_rate``, ``router_rank``, ...).
    window, burn_in : int, default 32, 8
        Training windows' length and unscored leading rows (truncated BPTT).
    batch_size, n_steps : int, default 32, 100
        Windows per optimisation step and number of steps (Adam).
    learning_rate : float, default 3e-3
    warmup : int, default 10
        Leading timestamps of every scored series that get the score 0.0.
    min_variance : float, default 1e-3
        Floor of the forecast variance, in units of the fit-time scale.
    backend : {"reference", "compiled", "auto"}, default "reference"
        Core backend used for training (scoring always uses the eager fast
        path). On a CPU the reference loop trains these small models fastest.
    device : str or torch.device, default "cpu"
        Where the forecaster trains (e.g. ``"cuda"``); the trained model is
        moved back to the CPU, where scoring and streaming run.
    progress : bool, default True
        Show a progress bar during training.
    log_dir : str, optional
        Log the training loss and layer statistics to TensorBoard there.
    seed : int, default 0
        Seeds the layer's masks and weights and the draw of training windows:
        the same seed gives the same scores.
    contamination : float in (0, 0.5], default 0.1
        Expected share of anomalies; sets ``threshold_`` on the training scores.
    surprise_windows : sequence of int, optional
        Window-level surprise (off by default): the score of ``t`` becomes the maximum of the
        one-step surprise and, for each window length ``w`` (distinct ints >= 2), ``0.5 * mean_c
        (sum of the last w standardised residuals z_c)**2 / (w * v_c)``, ``v_c`` the mean of that
        ratio over the series so far (1 under the model), which has the one-step surprise's
        distribution and stays large while a change lasts (see :mod:`~sparsernn.detectors.window_surprise`). The :class:`~sparsernn.detectors.StreamScorer`
        of the detector computes the same. None: the one-step surprise alone.
    forecast_horizon : int in [1, 1000], default 1
        Points the forecaster predicts after each point (:mod:`~sparsernn.detectors.horizons`): it is
        trained on all of them, and the score of ``t`` becomes the mean, over the horizons ``h`` whose
        forecast exists, of the surprise of ``u_t`` under the forecast made at ``t - h`` for ``h`` points
        ahead, which stays high for up to ``forecast_horizon`` points after a lasting change. At most
        ``window - 1 - burn_in`` (each horizon needs a target in a training window). The window-level
        surprise reads horizon 1. 1: the one-step forecaster.

    Attributes
    ----------
    decision_scores_ : array of shape (n_timestamps,)
        Scores of the training series.
    threshold_ : float
        The ``1 - contamination`` quantile of ``decision_scores_``.
    labels_ : array of shape (n_timestamps,)
        ``decision_scores_ > threshold_`` as 0/1.
    model_ : GaussianForecaster
        The trained forecaster.
    center_, scale_ : array of shape (n_channels,)
        The fit-time robust scaling.
    n_channels_ : int
        Width of the training series.
    n_features_in_ : int
        The same, by scikit-learn's name.
    feature_names_in_ : array of str
        The training DataFrame's column names (only when fitted on a DataFrame
        whose column names are all strings, scikit-learn's convention); a
        DataFrame scored later must have exactly these columns, in this order.
    training_losses_ : list of float
        Training loss of every step.
    inference_backend_ : str
        The inference kernel the last scoring ran on, picked by core's rule
        (:func:`~sparsernn.core.inference.choose_inference_backend`: ``"numba"``
        for one stream of an unrouted layer, ``"fused"`` for a routed one).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.sin(np.arange(600) / 5.0)
    >>> x[400] += 3.0
    >>> det = SelectiveUpdateDetector(n_steps=20, progress=False).fit(x)
    >>> int(np.argmax(det.decision_scores_))
    400
    """

    def __init__(self, hidden_size: int = 32, cell: str = "gru", update_gate: str | None = "event",
                 density_ih: float = 1.0, density_hh: float = 1.0, router_keep=None, layer_options=None,
                 window: int = 32, burn_in: int = 8, batch_size: int = 32, n_steps: int = 100,
                 learning_rate: float = 3e-3, warmup: int = 10, min_variance: float = 1e-3,
                 backend: str = "reference", progress: bool = True, log_dir: str | None = None, seed: int = 0,
                 contamination: float = 0.1, device="cpu", surprise_windows=None, forecast_horizon: int = 1) -> None:
        super().__init__(contamination=contamination)
        self.hidden_size = hidden_size
        self.cell = cell
        self.update_gate = update_gate
        self.density_ih = density_ih
        self.density_hh = density_hh
        self.router_keep = router_keep
        self.layer_options = layer_options
        self.window = window
        self.burn_in = burn_in
        self.batch_size = batch_size
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.warmup = warmup
        self.min_variance = min_variance
        self.backend = backend
        self.progress = progress
        self.log_dir = log_dir
        self.seed = seed
        self.device = device
        self.surprise_windows = surprise_windows
        self.forecast_horizon = forecast_horizon

    # ------------------------------------------------------------- building
    def _layer_options(self) -> dict:
        options = dict(self.layer_options or {})
        clash = sorted({"input_size", "hidden_size", "seed"} & set(options))
        if clash:
            raise ValueError(f"layer_options must not set {clash}; they follow from the data and the detector")
        options.update(cell=self.cell, update_gate=self.update_gate, density_ih=self.density_ih,
                       density_hh=self.density_hh, router_keep=self.router_keep, backend=self.backend)
        return options

    def _build_model(self, n_channels: int) -> GaussianForecaster:
        return GaussianForecaster(n_channels, _check_int("hidden_size", self.hidden_size, 1), self._layer_options(),
                                  _check_positive("min_variance", self.min_variance),
                                  check_seed("seed", self.seed), horizon=check_horizon(self.forecast_horizon))

    def _check_hyperparameters(self) -> None:
        _check_int("window", self.window, 2)
        _check_int("burn_in", self.burn_in, 0)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("n_steps", self.n_steps, 0)
        _check_int("warmup", self.warmup, 1)
        _check_positive("learning_rate", self.learning_rate)
        check_number("contamination", self.contamination, 0.0, 0.5, low_open=True)
        check_seed("seed", self.seed)
        check_windows(self.surprise_windows)
        horizon, window = check_horizon(self.forecast_horizon), int(self.window)
        scored = window - 1 - min(int(self.burn_in), window - 2)  # rows of a training window with a target
        if horizon > scored:
            raise ValueError(f"forecast_horizon must be at most window - 1 - burn_in = {scored} (each horizon needs "
                             f"a target in a training window); got {self.forecast_horizon!r}")
        self._device()

    def _device(self) -> torch.device:
        try:
            return torch.device(self.device)
        except (TypeError, RuntimeError) as error:
            raise ValueError(f"device must name a torch device ('cpu', 'cuda', 'cuda:0', ...); "
                             f"got {self.device!r}") from error

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train the forecaster on one series and score it.

        Parameters
        ----------
        X : array of shape (n_timestamps,) or (n_timestamps, n_channels), pandas Series or DataFrame
            The training series, at least 2 timestamps, finite, with strictly
            increasing timestamps when it has a DatetimeIndex.
        y : ignored

        Returns
        -------
        self
        """
        self._check_hyperparameters()
        series = as_series(X, "X", min_length=2)
        self.n_channels_ = self.n_features_in_ = series.values.shape[1]
        self.feature_names_ = None if series.was_1d else series.columns
        names = feature_names_of(X)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        with np.errstate(over="ignore", invalid="ignore"):
            self.center_, self.scale_ = robust_center_scale(series.values)
        self.model_ = self._build_model(self.n_channels_)
        self.training_losses_ = self._train(series, int(self.seed))
        self.decision_scores_ = self._scores(series)
        self._process_decision_scores()
        return self

    def _train(self, series: SeriesInput, seed: int) -> list[float]:
        """``n_steps`` Adam steps of the forecaster on ``series`` (scaled by the fit-time scaling)."""
        u = torch.from_numpy(self.normalize(series.values)).to(self.model_.head.weight.dtype)
        device = self._device()
        try:
            return train_forecaster(
                self.model_.to(device), u.to(device), window=int(self.window), burn_in=int(self.burn_in),
                batch_size=int(self.batch_size), n_steps=int(self.n_steps), learning_rate=float(self.learning_rate),
                seed=seed, progress=self.progress, log_dir=self.log_dir)
        finally:
            self.model_.to("cpu")

    def partial_fit(self, X, y=None):
        """Continue training the fitted forecaster on new data (scikit-learn's incremental convention).

        The forecaster takes ``n_steps`` more Adam steps (``learning_rate``, random windows of
        ``window`` points, as :meth:`fit` trains) on ``X``, scaled with the *fit-time* centre and
        scale (kept, so scores stay in the units of :meth:`fit`); Adam starts from fresh moments
        at each call. The windows are drawn with the seed ``seed + len(training_losses_)``, so a
        sequence of calls is reproducible and each call draws new windows.
        ``decision_scores_``, ``threshold_`` and ``labels_`` become those of ``X``; the losses are
        appended to ``training_losses_``. On a detector that is not fitted yet this is :meth:`fit`.
        A :class:`~sparsernn.detectors.StreamScorer` built before keeps the weights it copied.

        Parameters
        ----------
        X : array of shape (n_timestamps,) or (n_timestamps, n_channels), pandas Series or DataFrame
            Checked as :meth:`fit` checks it, and of the fitted width (and column names).
        y : ignored

        Returns
        -------
        self
        """
        if not hasattr(self, "model_"):
            return self.fit(X)
        self._check_hyperparameters()
        check_feature_names(getattr(self, "feature_names_in_", None), X, "X")
        series = as_series(X, "X", min_length=2, n_channels=self.n_channels_)
        seed = (int(self.seed) + len(self.training_losses_)) % (MAX_SEED + 1)
        self.training_losses_ = list(self.training_losses_) + self._train(series, seed)
        self.decision_scores_ = self._scores(series)
        self._process_decision_scores()
        return self

    @contextmanager
    def _plain_contamination(self):
        """PyOD takes a contamination that is not a Python float / int for a PyThresh object: hand it a
        checked float (np.float32 included) for the duration, then restore the parameter as given."""
        given = self.contamination
        self.contamination = check_number("contamination", given, 0.0, 0.5, low_open=True)
        try:
            yield
        finally:
            self.contamination = given

    def _process_decision_scores(self):
        with self._plain_contamination():
            return super()._process_decision_scores()

    # -------------------------------------------------------------- scoring
    def normalize(self, values: np.ndarray) -> np.ndarray:
        """``(values - center_) / scale_`` for values of shape (n_timestamps, n_channels), clipped to
        ``[-INPUT_CLIP, INPUT_CLIP]`` robust units (:data:`~sparsernn.detectors.normalization.INPUT_CLIP`)."""
        with np.errstate(over="ignore"):
            return clip_units((values - self.center_) / self.scale_)

    def _scores(self, series: SeriesInput) -> np.ndarray:
        u = self.normalize(series.values).astype(np.float32)[:, None]
        inference = InferenceStepper(self.model_.layer, self.model_.readout())  # core picks the kernel
        mean, var, _ = inference.run(u, self.model_.layer.initial_state(1).numpy())
        self.inference_backend_ = inference.last_backend
        horizon = self.model_.horizon
        if horizon > 1:  # the StreamScorer's rule (horizons.py): a fresh stream's K forecasts, then the series'
            d = u.shape[2]
            before_m, before_v = np.zeros((horizon, 1, d * horizon), np.float32), np.ones((horizon, 1, d * horizon),
                                                                                              np.float32)
            scores = horizon_surprise(u, np.concatenate([before_m, mean[:-1]]), np.concatenate([before_v, var[:-1]]),
                                      np.zeros(1, dtype=np.int64), horizon, np.float32(0.5 / d))[:, 0]
            mean, var = mean[..., :d], var[..., :d]  # horizon 1, for the windows
        u, mean, var = torch.from_numpy(u), torch.from_numpy(mean), torch.from_numpy(var)
        if horizon == 1:
            scores = np.zeros(len(series.values))
            scores[1:] = surprise(u[1:], mean[:-1], var[:-1])[:, 0].double().numpy()
        scores[: self.warmup] = 0.0
        windows = check_windows(self.surprise_windows)
        if windows is not None:  # the StreamScorer's rule (window_surprise.py), on the whole series
            n, d = u.shape[0], u.shape[2]
            z = np.zeros((n, 1, d))
            z[1:] = standardized_residuals(u[1:].numpy(), mean[:-1].numpy(), var[:-1].numpy())
            ok = (np.arange(n) >= self.warmup)[:, None]
            width = max(windows) - 1
            stats = window_surprise(z, ok, np.zeros((1, width, d)), np.zeros((1, width), dtype=bool),
                                    np.ones((1, len(windows), d)), np.zeros(1, dtype=np.int64), windows)[0]
            scores = np.maximum(scores, stats[:, 0])
        return scores

    def _checked(self, X) -> SeriesInput:
        check_is_fitted(self, ["model_", "decision_scores_", "threshold_"])
        check_feature_names(getattr(self, "feature_names_in_", None), X, "X")
        return as_series(X, "X", n_channels=self.n_channels_)

    def decision_function(self, X):
        """Anomaly score of every timestamp of ``X``, scored from a fresh state.

        Parameters
        ----------
        X : array of shape (n_timestamps,) or (n_timestamps, n_channels), pandas Series or DataFrame
            Same width as the training series.

        Returns
        -------
        scores : array of shape (n_timestamps,), or a pandas Series on X's index
            Higher is more anomalous; the score at t depends on ``X[:t + 1]`` only.
        """
        series = self._checked(X)
        return series.wrap(self._scores(series))

    def predict(self, X, return_confidence: bool = False):
        """0/1 labels: 1 where the score exceeds ``threshold_``.

        Returns an array of shape (n_timestamps,), or a pandas Series on X's index;
        with ``return_confidence``, also :meth:`predict_confidence`'s values.
        """
        series = self._checked(X)
        labels = series.wrap((self._scores(series) > self.threshold_).astype(int), name="label")
        if return_confidence:
            return labels, self.predict_confidence(X)
        return labels

    def predict_confidence(self, X):
        """PyOD's confidence in each label (Perini et al., 2020): how consistently the
        label would come out if the training scores were resampled, in [0, 1].

        Returns an array of shape (n_timestamps,), or a pandas Series on X's index.
        """
        series = self._checked(X)
        with self._plain_contamination():
            confidence = super().predict_confidence(series.values)  # PyOD's estimate, on the array
        return series.wrap(np.asarray(confidence, dtype=float), name="confidence")

    def predict_with_rejection(self, X, T=32, return_stats=False, delta=0.1, c_fp=1, c_fn=1, c_r=-1):
        """PyOD's labels with rejection: 0, 1, or -2 where :meth:`predict_confidence` is too low to
        decide (PyOD's estimate and arguments, run on the array).

        Returns an array of shape (n_timestamps,), or a pandas Series on X's index; with
        ``return_stats``, also PyOD's ``[expected rejection rate, its upper bound, cost bound]``.
        """
        series = self._checked(X)
        with self._plain_contamination():
            result = super().predict_with_rejection(series.values, T=T, return_stats=return_stats, delta=delta,
                                                    c_fp=c_fp, c_fn=c_fn, c_r=c_r)
        labels, stats = result if return_stats else (result, None)
        labels = series.wrap(np.asarray(labels), name="label")
        return (labels, stats) if return_stats else labels

    def predict_proba(self, X, method: str = "linear", return_confidence: bool = False):
        """Probability of being an anomaly, as PyOD computes it from the training scores.

        Parameters
        ----------
        X : array of shape (n_timestamps,) or (n_timestamps, n_channels), pandas Series or DataFrame
        method : {"linear", "unify"}
            ``linear``: min-max scaling by the training scores, clipped to [0, 1];
            ``unify``: the Gaussian scaling of Kriegel et al. (2011).

        return_confidence : bool
            Also return :meth:`predict_confidence`'s values.

        Returns
        -------
        probs : array of shape (n_timestamps, 2) — columns (normal, anomaly) —
            or a DataFrame on X's index with columns ``normal`` and ``anomaly``.
        """
        series = self._checked(X)
        scores, train = self._scores(series), self.decision_scores_
        if method == "linear":
            span = train.max() - train.min()
            anomaly = np.clip((scores - train.min()) / (span if span > 0 else 1.0), 0.0, 1.0)
        elif method == "unify":
            sigma = train.std() or 1.0
            anomaly = np.clip(erf((scores - train.mean()) / (sigma * np.sqrt(2))), 0.0, 1.0)
        else:
            raise ValueError(f"method must be 'linear' or 'unify'; got {method!r}")
        probs = np.stack([1.0 - anomaly, anomaly], axis=1)
        if series.index is not None:
            probs = pd.DataFrame(probs, index=series.index, columns=["normal", "anomaly"])
        if return_confidence:
            return probs, self.predict_confidence(X)
        return probs
