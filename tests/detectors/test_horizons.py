"""Multi-horizon forecasts (``forecast_horizon``): the score's definition, the training loss, batch = stream,
the inference kernels' wide read-out, persistence, the option's checks."""
import numpy as np
import pytest
import torch

from sparsernn.core.inference import InferenceStepper
from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.forecaster import GaussianForecaster, gaussian_nll
from sparsernn.detectors.horizons import horizon_nll, horizon_surprise
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL, batched_and_alone, blocks_and_points, resumed_chain


def constant_forecaster(horizon, warmup=1):
    """A detector whose forecast for ``h`` points ahead is N(h, 1) after every point, with the identity
    scaling, so a point's score is the mean over its horizons of 0.5 (x - h)^2."""
    det = SelectiveUpdateDetector(**{**SMALL, "warmup": warmup}, min_variance=1e-12, seed=0,
                                  forecast_horizon=horizon).fit(np.random.default_rng(0).standard_normal(64))
    with torch.no_grad():
        det.model_.head.weight.zero_()
        det.model_.head.bias.zero_()
        det.model_.head.bias[:horizon] = torch.arange(1, horizon + 1, dtype=torch.float32)
    det.center_, det.scale_ = np.zeros(1), np.ones(1)
    return det


def test_the_score_matches_a_hand_computation():
    """K = 3, x = [5, 1, 2, 3, 4]: point n averages the horizons h <= min(3, n) of 0.5 (x_n - h)^2
    (point 0 in warmup)."""
    x = np.array([5.0, 1.0, 2.0, 3.0, 4.0])
    expected = [0.0, 0.0, 0.5 * (1 + 0) / 2, 0.5 * (4 + 1 + 0) / 3, 0.5 * (9 + 4 + 1) / 3]
    det = constant_forecaster(3)
    np.testing.assert_allclose(det.decision_function(x), expected, rtol=1e-6, atol=1e-7)
    blocks, singles = blocks_and_points(lambda: StreamScorer(det), x, parts=2)
    np.testing.assert_allclose(blocks, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(singles, blocks)
    # horizon 1 alone: the one-step surprise under N(1, 1)
    np.testing.assert_allclose(constant_forecaster(1).decision_function(x), 0.5 * np.r_[0, (x[1:] - 1) ** 2],
                               rtol=1e-6)


def reference_scores(u, mean, var, count, horizon):
    """horizon_surprise by its definition, point by point, in float64."""
    T, B, d = u.shape
    out = np.zeros((T, B))
    for t in range(T):
        for b in range(B):
            n = count[b] + t
            terms = []
            for h in range(1, horizon + 1):
                if n >= h or h == 1:
                    row = horizon - h + t  # made h points before: row K + t - h of the forecasts
                    m = mean[row, b, (h - 1) * d: h * d].astype(np.float64)
                    v = var[row, b, (h - 1) * d: h * d].astype(np.float64)
                    terms.append(0.5 * np.mean((u[t, b] - m) ** 2 / v))
            out[t, b] = np.mean(terms)
    return out


@pytest.mark.parametrize("horizon,d", [(2, 1), (5, 3), (4, 2)])
def test_the_kernel_matches_the_definition_on_random_forecasts(horizon, d):
    rng = np.random.default_rng(horizon * 10 + d)
    T, B = 9, 4
    u = rng.standard_normal((T, B, d)).astype(np.float32)
    mean = rng.standard_normal((horizon + T - 1, B, d * horizon)).astype(np.float32)
    var = rng.uniform(0.05, 4.0, (horizon + T - 1, B, d * horizon)).astype(np.float32)
    count = np.array([0, 1, 3, 50])
    got = horizon_surprise(u, mean, var, count, horizon, np.float32(0.5 / d))
    np.testing.assert_allclose(got, reference_scores(u, mean, var, count, horizon), rtol=1e-5)
    # extreme inputs: a tiny variance and a huge residual stay finite and ordered
    var[:] = 1e-6
    u[0, 0, 0] = 1e4
    big = horizon_surprise(u, mean, var, count, horizon, np.float32(0.5 / d))
    assert np.isfinite(big).all() and big[0, 0] > 1e12


def test_the_training_loss_scores_each_horizon_on_the_rows_it_predicts():
    torch.manual_seed(0)
    T, B, d, K, burn_in = 10, 3, 2, 4, 3
    u = torch.randn(T, B, d)
    mean, var = torch.randn(T, B, d * K), torch.rand(T, B, d * K) + 0.1
    expected = []
    for h in range(1, K + 1):
        nll = [0.5 * (torch.log(var[t, :, (h - 1) * d: h * d]) + (u[t + h] - mean[t, :, (h - 1) * d: h * d]) ** 2
                      / var[t, :, (h - 1) * d: h * d]) for t in range(burn_in, T - h)]
        expected.append(torch.stack(nll).mean())
    torch.testing.assert_close(horizon_nll(u, mean, var, burn_in, K), torch.stack(expected).mean())
    # horizon 1 is exactly the one-step loss; horizons past the window are left out
    assert torch.equal(horizon_nll(u, mean[..., :d], var[..., :d], burn_in, 1),
                       gaussian_nll(u[burn_in + 1:], mean[burn_in:-1, :, :d], var[burn_in:-1, :, :d]))
    short = horizon_nll(u[:6], mean[:6], var[:6], burn_in, K)  # only horizons 1, 2 have targets in 6 rows
    torch.testing.assert_close(short, horizon_nll(u[:6], mean[:6, :, :2 * d], var[:6, :, :2 * d], burn_in, 2))


def test_each_horizon_starts_as_a_persistence_forecast():
    model = GaussianForecaster(3, 8, {}, 1e-3, seed=0, horizon=4)
    w = model.head.weight.detach()
    assert w.shape == (2 * 3 * 4, 8 + 3)
    for h in range(4):
        torch.testing.assert_close(w[3 * h: 3 * (h + 1), 8:], torch.eye(3))
    assert not w[12:, 8:].any()  # the log-variances do not read the input
    one = GaussianForecaster(3, 8, {}, 1e-3, seed=0)
    assert one.horizon == 1 and one.head.weight.shape == (6, 11)


@pytest.mark.parametrize("streams", [1, 5])
def test_the_inference_kernels_carry_the_wide_read_out(streams):
    """Core's kernels (numba for one stream, the block kernel for several) give the model's own forecasts
    for every horizon."""
    model = GaussianForecaster(2, 16, {"update_gate": "event"}, 1e-3, seed=1, horizon=3).eval()
    u = torch.randn(20, streams, 2)
    stepper = InferenceStepper(model.layer, model.readout())
    mean, var, state = stepper.run(u.numpy(), model.layer.initial_state(streams).numpy())
    with torch.no_grad():
        ref_mean, ref_var, ref_state = model(u)
    assert mean.shape == (20, streams, 6)
    np.testing.assert_allclose(mean, ref_mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, ref_var.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state, ref_state.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("gate", ["event", None])
def test_the_stream_equals_the_detector_in_blocks_and_points(series, channels, gate):
    x = series[0][:240]
    data = x[:, None] if channels == 1 else np.stack([x, np.cos(np.arange(len(x)) / 7.0)], axis=1)
    det = SelectiveUpdateDetector(**SMALL, seed=3, forecast_horizon=6, update_gate=gate,
                                  surprise_windows=[4] if channels == 2 else None).fit(data)
    batch = det.decision_function(data)
    stream = StreamScorer(det)
    scores = stream.process(data[:, None, :])[:, 0]
    np.testing.assert_array_equal(scores, batch)
    pointwise, singles = StreamScorer(det), []
    for row in data:
        value = float(row[0]) if channels == 1 else row
        singles.append(pointwise.score_one(value))
        pointwise.learn_one(value)
    np.testing.assert_array_equal(singles, scores)
    blocks = StreamScorer(det)
    parts = np.concatenate([blocks.process(p[:, None, :])[:, 0] for p in np.array_split(data, 7)])
    np.testing.assert_array_equal(parts, scores)
    assert stream.horizon_mean.shape == (1, 6, 6 * channels)
    # the one-step forecast kept in forecast_mean is horizon 1 of the last forecast
    np.testing.assert_array_equal(stream.forecast_mean[0], stream.horizon_mean[0, -1, :channels])


def test_streams_batched_together_equal_each_alone(series):
    det = SelectiveUpdateDetector(**SMALL, seed=3, forecast_horizon=5).fit(series[0])
    batched = batched_and_alone(det, series[0][:150], normalizer_halflife=40.0)
    assert batched.horizon_mean.shape == (3, 5, 5)


def test_a_level_shift_is_seen_for_longer_than_by_the_one_step_forecaster():
    """Trained on noise around a slow sine; a shift of 3 sd. The one-step forecaster's surprise stays above
    the pre-shift maximum for at most a few points; the 16-horizon one for several more."""
    rng = np.random.default_rng(1)
    x = np.sin(np.arange(700) / 15.0) + 0.1 * rng.standard_normal(700)
    x[500:] += 3.0  # 30 sd of the noise
    seen = {}
    for horizon in (1, 16):
        det = SelectiveUpdateDetector(**{**SMALL, "n_steps": 60, "seed": 2, "forecast_horizon": horizon,
                                         "window": 32, "burn_in": 4}).fit(x[:400])
        score = det.decision_function(x)
        seen[horizon] = int((score[500:530] > score[100:500].max()).sum())
    assert seen[16] >= seen[1] + 4, seen  # 1 and 15 here


def test_save_and_load_continue_bit_identically(series, tmp_path):
    nab = SelectiveUpdateNAB(seed=0, forecast_horizon=4, **{k: v for k, v in SMALL.items() if k != "progress"})
    scorer = resumed_chain(nab, series[0], tmp_path)._scorer
    assert {"horizon_mean", "horizon_var"} <= set(scorer.state_arrays()) and scorer.horizon_mean.shape == (2, 4, 4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None, 1001])
def test_bad_horizons_are_refused_naming_the_option(series, bad):
    det = SelectiveUpdateDetector(**SMALL, forecast_horizon=bad)
    with pytest.raises(ValueError, match="forecast_horizon"):
        det.fit(series[0])
    assert not hasattr(det, "model_")
    with pytest.raises(ValueError, match="forecast_horizon"):
        SelectiveUpdateNAB(forecast_horizon=bad)


def test_a_horizon_past_the_training_window_is_refused(series):
    # window 24, burn_in 4: 19 rows of a window have a target
    SelectiveUpdateDetector(**SMALL, forecast_horizon=19).fit(series[0][:100])
    with pytest.raises(ValueError, match="forecast_horizon must be at most window - 1 - burn_in = 19"):
        SelectiveUpdateDetector(**SMALL, forecast_horizon=20).fit(series[0][:100])


def test_online_learning_is_refused_with_several_horizons(series):
    det = SelectiveUpdateDetector(**SMALL, forecast_horizon=3).fit(series[0])
    with pytest.raises(ValueError, match="multi-horizon"):
        StreamScorer(det, learn={"every": 4})
    with pytest.raises(ValueError, match="multi-horizon"):
        SelectiveUpdateNAB(forecast_horizon=3, learn={})
