"""Window-level surprise (``surprise_windows``): its statistic, batch = stream, persistence, the option's checks."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.nab import SelectiveUpdateNAB
from sparsernn.detectors.window_surprise import check_windows, window_surprise

from .conftest import SMALL, batched_and_alone, blocks_and_points, resumed_chain


def test_the_statistic_matches_a_hand_computation():
    """z = [., 2, -1, 3] (first point in warmup), window 2: q = (sum z)^2 / n (n = scored points in the window),
    S = 0.5 * q / v, v the mean of the earlier q's with the prior 1 counted once."""
    z = np.array([7.0, 2.0, -1.0, 3.0])[:, None, None]
    ok = np.array([False, True, True, True])[:, None]
    stats, ring, ring_ok, var, seen = window_surprise(
        z, ok, np.zeros((1, 1, 1)), np.zeros((1, 1), dtype=bool), np.ones((1, 1, 1)), np.zeros(1, dtype=np.int64),
        (2,))
    # t1: q = 4, v = 1 -> 2, then v = (1 + 4) / 2 = 2.5; t2: q = (2 - 1)^2 / 2 = 0.5 -> 0.25 / 2.5 = 0.1,
    # then v = (1 + 4 + 0.5) / 3 = 11/6; t3: q = (-1 + 3)^2 / 2 = 2 -> 1 / (11/6) = 6/11, then v = 7.5 / 4
    np.testing.assert_allclose(stats[:, 0], [0.0, 2.0, 0.1, 6 / 11], rtol=1e-14)
    np.testing.assert_array_equal(ring[0, :, 0], [3.0])
    np.testing.assert_array_equal(ring_ok[0], [True])
    np.testing.assert_allclose(var[0, 0, 0], 7.5 / 4, rtol=1e-14)
    assert seen[0] == 3


def controlled_detector(windows, warmup=1):
    """A detector whose forecast is N(0, 1) at every step and whose scaling is the identity, so z_t = x_t."""
    det = SelectiveUpdateDetector(**{**SMALL, "warmup": warmup}, min_variance=1e-12, seed=0,
                                  surprise_windows=windows).fit(np.random.default_rng(0).standard_normal(64))
    with torch.no_grad():
        det.model_.head.weight.zero_()
        det.model_.head.bias.zero_()
    det.center_, det.scale_ = np.zeros(1), np.ones(1)
    return det


def test_the_detector_and_the_stream_score_a_hand_computed_series():
    """z = x under a N(0, 1) forecast: score = max(0.5 z^2, S_2), the first point in warmup."""
    x = np.array([5.0, 1.0, 2.0, 2.0, 1.0])
    # z = 1, 2, 2, 1. t1: q = 1, v = 1: max(0.5, 0.5), v -> 1; t2: q = 9/2: max(2, 2.25), v -> 6.5/3;
    # t3: q = 8: max(2, 4 / (6.5/3) = 1.846), v -> 14.5/4; t4: q = 9/2: max(0.5, 2.25 / 3.625)
    expected = [0.0, 0.5, 2.25, 2.0, 2.25 / 3.625]
    det = controlled_detector((2,))
    np.testing.assert_allclose(det.decision_function(x), expected, rtol=1e-12)
    blocks, singles = blocks_and_points(lambda: StreamScorer(det), x, parts=3)
    np.testing.assert_allclose(blocks, expected, rtol=1e-12)
    np.testing.assert_array_equal(singles, blocks)
    np.testing.assert_allclose(controlled_detector(None).decision_function(x), 0.5 * np.r_[0, x[1:] ** 2])


def test_a_level_shift_is_seen_for_longer_than_by_the_one_step_surprise():
    """A forecaster trained on noise (long enough to forecast the mean, not the last value); a shift of
    1.5 sd for 100 points. Points whose score beats every score before the shift: the window-level
    score has many more of them than the one-step one."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(700)
    x[500:600] += 1.5
    det = SelectiveUpdateDetector(**{**SMALL, "n_steps": 200, "seed": 2}).fit(x[:400])
    one = det.decision_function(x)
    win = det.set_params(surprise_windows=(8, 32)).decision_function(x)  # the windows do not change the model
    assert np.all(win >= one)  # the maximum includes the one-step surprise
    seen_one = int((one[500:600] > one[:500].max()).sum())
    seen_win = int((win[500:600] > win[:500].max()).sum())
    assert seen_win >= 30 and seen_win >= 3 * max(seen_one, 1), (seen_one, seen_win)  # 40 and 9 here
    assert (win[600:] < win[500:600].max()).all()  # it falls back once the shift has passed


@pytest.mark.parametrize("learn", [None, {"every": 4, "window": 16}])
@pytest.mark.parametrize("channels", [1, 2])
def test_the_stream_equals_the_detector_and_its_paths_agree(series, learn, channels):
    x = series[0][:240]
    data = x[:, None] if channels == 1 else np.stack([x, np.cos(np.arange(len(x)) / 7.0)], axis=1)
    det = SelectiveUpdateDetector(**SMALL, seed=3, surprise_windows=[16, 4]).fit(data)
    stream = StreamScorer(det, learn=learn)
    scores = stream.process(data[:, None, :])[:, 0]
    if learn is None:  # no learning: the detector's batch scores
        np.testing.assert_allclose(scores, det.decision_function(data), rtol=1e-5, atol=1e-7)
    else:  # learning changes the forecasts; the windows still add to the one-step surprise
        plain = StreamScorer(SelectiveUpdateDetector(**SMALL, seed=3).fit(data), learn=learn)
        one_step = plain.process(data[:, None, :])[:, 0]
        assert np.all(scores >= one_step) and np.any(scores > one_step)
    # point by point and in blocks: bit for bit the same
    pointwise = StreamScorer(det, learn=learn)
    singles = []
    for row in data:
        value = float(row[0]) if channels == 1 else row
        singles.append(pointwise.score_one(value))
        pointwise.learn_one(value)
    np.testing.assert_array_equal(singles, scores)
    blocks = StreamScorer(det, learn=learn)
    parts = np.concatenate([blocks.process(p[:, None, :])[:, 0] for p in np.array_split(data, 5)])
    np.testing.assert_array_equal(parts, scores)


def test_streams_batched_together_equal_each_alone(fitted, series):
    det = SelectiveUpdateDetector(**SMALL, seed=3, surprise_windows=(8,)).fit(series[0])
    batched = batched_and_alone(det, series[0][:150], normalizer_halflife=40.0)
    assert batched.window_z.shape == (3, 7, 1) and batched.window_ok.all()
    assert batched.window_var.shape == (3, 1, 1) and (batched.window_seen == 150 - SMALL["warmup"]).all()


@pytest.mark.parametrize("learn", [None, {"every": 4, "window": 16}])
def test_save_and_load_continue_bit_identically(series, tmp_path, learn):
    nab = SelectiveUpdateNAB(seed=0, surprise_windows=[4, 16], learn=learn,
                             **{k: v for k, v in SMALL.items() if k != "progress"})
    scorer = resumed_chain(nab, series[0], tmp_path)._scorer
    assert scorer.windows == (4, 16) and scorer.window_ok.all()
    assert {"window_z", "window_ok", "window_var", "window_seen"} <= set(scorer.state_arrays())


def test_the_nab_chain_takes_the_option_and_it_changes_the_scores(series):
    x = series[0]
    stamps = pd.date_range("2024-01-01", periods=len(x), freq="h")
    settings = {k: v for k, v in SMALL.items() if k != "progress"}
    plain = SelectiveUpdateNAB(seed=0, surprise_weight=1.0, **settings).run(x, 100, stamps)
    windowed = SelectiveUpdateNAB(seed=0, surprise_weight=1.0, surprise_windows=[8, 32], **settings).run(x, 100, stamps)
    assert windowed.shape == plain.shape and not np.array_equal(windowed, plain)


@pytest.mark.parametrize("bad", [[], [1], [0, 8], [8, 8], [2.5], [True], "8", 8, [10 ** 6], [[8]]])
def test_bad_windows_are_refused_naming_the_option(bad):
    with pytest.raises(ValueError, match="surprise_windows"):
        check_windows(bad)
    with pytest.raises(ValueError, match="surprise_windows"):
        SelectiveUpdateNAB(surprise_windows=bad)
    with pytest.raises(ValueError, match="surprise_windows"):
        SelectiveUpdateDetector(**SMALL, surprise_windows=bad).fit(np.arange(50.0))


def test_windows_are_sorted_and_none_is_off():
    assert check_windows([32, 8]) == (8, 32) and check_windows(np.array([4])) == (4,)
    assert check_windows(None) is None


def test_run_nab_params_reach_the_option(nab_dir, tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "run_nab.py"
    bad = subprocess.run([sys.executable, str(script), "--data", str(nab_dir), "--detectors", "surnn",
                          "--params", "surprise_windows=[1]"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "surprise_windows" in bad.stderr and "Traceback" not in bad.stderr
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, str(script), "--data", str(nab_dir), "--files",
                           "realKnownCause/rogue_agent_key_hold.csv", "--detectors", "surnn", "--json", str(out),
                           "--params", "surprise_windows=[8,32]", "n_steps=4"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(json.loads(out.read_text())) == ["surnn(surprise_windows=[8,32],n_steps=4)"]
