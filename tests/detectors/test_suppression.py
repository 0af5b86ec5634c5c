"""PeakSuppression: one report per burst, block == point-by-point, per-stream state, causality."""
import numpy as np
import pytest

from sparsernn.detectors import AnomalyLikelihood, PeakSuppression, StreamScorer
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL, blocks_and_points


def reference(raw, period):
    """The rule, plainly: keep raw[t] where it beats raw[t - period:t] (zeros before the start)."""
    return np.array([r if r > raw[max(0, t - period):t].max(initial=0.0) else 0.0 for t, r in enumerate(raw)])


@pytest.fixture
def likelihood(fitted):
    return AnomalyLikelihood(StreamScorer(fitted))


def test_scores_after_a_peak_are_zero_until_beaten_or_the_period_ends(likelihood, series):
    x = series[0][:400]
    raw = AnomalyLikelihood(StreamScorer(likelihood.scorer.detector)).process(x[:, None])[:, 0]
    kept = PeakSuppression(likelihood, period=20).process(x[:, None])[:, 0]
    np.testing.assert_array_equal(kept, reference(raw, 20))
    assert (kept == 0).sum() > len(x) // 2  # most points are suppressed
    top = int(np.argmax(raw))
    assert kept[top] == raw[top]  # the strongest point always survives
    assert not kept[top + 1: top + 21].any()  # and caps the next `period` points


def test_block_equals_point_by_point_and_score_one_changes_nothing(fitted, series):
    x = series[0][:200]
    blocks, singles = blocks_and_points(
        lambda: PeakSuppression(AnomalyLikelihood(StreamScorer(fitted)), period=15), x)
    np.testing.assert_allclose(blocks, singles, rtol=1e-12, atol=1e-12)


def test_streams_are_suppressed_independently(fitted, series):
    x = np.stack([series[0][:200], series[0][:200][::-1]], axis=1)
    raw = AnomalyLikelihood(StreamScorer(fitted)).process(x, streams=["a", "b"])
    many = PeakSuppression(AnomalyLikelihood(StreamScorer(fitted)), period=10)
    first = many.process(x[:120], streams=["a", "b"])
    second = many.process(x[120:, ::-1], streams=["b", "a"])[:, ::-1]  # the other order: rows follow ids
    kept = np.concatenate([first, second])
    for column in range(2):
        np.testing.assert_array_equal(kept[:, column], reference(raw[:, column], 10))
    assert many.stream_ids == ["a", "b"]


def test_suppression_is_causal(fitted, series):
    x = series[0][:300]
    scores = PeakSuppression(AnomalyLikelihood(StreamScorer(fitted)), period=25).process(x[:, None])[:, 0]
    changed = x.copy()
    changed[150:] += 5.0
    again = PeakSuppression(AnomalyLikelihood(StreamScorer(fitted)), period=25).process(changed[:, None])[:, 0]
    np.testing.assert_array_equal(again[:150], scores[:150])


@pytest.mark.parametrize("period", [0, -3, 2.5, True, None])
def test_bad_period_is_rejected(likelihood, period):
    with pytest.raises((ValueError, TypeError), match="period"):
        PeakSuppression(likelihood, period=period)


def test_nab_adapter_suppression_can_be_turned_off(series):
    x = series[0][:300]
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    off = SelectiveUpdateNAB(seed=0, suppression=None, seasonal_period=40, **params).run(x, probationary=100)
    on = SelectiveUpdateNAB(seed=0, suppression=1.0, seasonal_period=40, **params).run(x, probationary=100)
    assert ((on == off) | (on == 0)).all() and (on == 0).sum() > (off == 0).sum()
    with pytest.raises(ValueError, match="suppression"):
        SelectiveUpdateNAB(suppression=0)
