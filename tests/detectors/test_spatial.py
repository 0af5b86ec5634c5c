"""SpatialAnomaly: NAB's rule fires outside the seen range (by the tolerance), not inside; per stream; causal."""
import numpy as np
import pytest

from sparsernn.detectors import AnomalyLikelihood, SpatialAnomaly, StreamScorer
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL, blocks_and_points


def reference(values, tolerance=0.05):
    """NAB's loop, plainly: flag where x leaves [lo - tol * (hi - lo), hi + tol * (hi - lo)], then widen."""
    flags, lo, hi = [], None, None
    for x in values:
        margin = None if lo is None or lo == hi else tolerance * (hi - lo)
        flags.append(margin is not None and (x > hi + margin or x < lo - margin))
        lo, hi = (x, x) if lo is None else (min(lo, x), max(hi, x))
    return np.array(flags)


@pytest.fixture
def likelihood(fitted):
    return AnomalyLikelihood(StreamScorer(fitted))


def test_fires_outside_the_range_by_more_than_the_tolerance_only(likelihood):
    x = np.array([0.0, 1.0, 0.5, 1.04, 0.98, -0.04, 1.2, 1.2, 1.25, -0.3, 0.1])
    #                             in    in    in     out  in   in (new range 1.2) out   in
    raw = AnomalyLikelihood(StreamScorer(likelihood.scorer.detector)).process(x[:, None])[:, 0]
    scores = SpatialAnomaly(likelihood).process(x[:, None])[:, 0]
    expected = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0], dtype=bool)
    np.testing.assert_array_equal(reference(x), expected)
    np.testing.assert_array_equal(scores == 1.0, expected)
    np.testing.assert_array_equal(scores[~expected], raw[~expected])  # elsewhere the wrapped score


def test_matches_nab_loop_and_block_equals_point_by_point(fitted, series):
    x = series[0][:300] * np.linspace(1.0, 3.0, 300)  # a growing range: many firings
    blocks, singles = blocks_and_points(
        lambda: SpatialAnomaly(AnomalyLikelihood(StreamScorer(fitted)), tolerance=0.05), x)
    np.testing.assert_allclose(blocks, singles, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(blocks == 1.0, reference(x))
    assert 5 < reference(x).sum() < 100


def test_streams_keep_their_own_ranges(fitted):
    spatial = SpatialAnomaly(AnomalyLikelihood(StreamScorer(fitted)))
    spatial.process(np.array([[0.0, 10.0], [1.0, 20.0]]), streams=["a", "b"])
    # 5.0 is far outside a's range [0, 1]; 15.0 is inside b's [10, 20]
    scores = spatial.score_many(np.array([5.0, 15.0]), streams=["a", "b"])
    assert scores[0] == 1.0 and scores[1] < 1.0
    np.testing.assert_array_equal(spatial.low[:, 0], [0.0, 10.0])
    np.testing.assert_array_equal(spatial.high[:, 0], [1.0, 20.0])


@pytest.mark.parametrize("tolerance", [-0.1, True, None, "5%"])
def test_bad_tolerance_is_rejected(likelihood, tolerance):
    with pytest.raises((ValueError, TypeError), match="tolerance"):
        SpatialAnomaly(likelihood, tolerance=tolerance)


def test_nab_adapter_spatial_rule_can_be_turned_off(series):
    x = series[0][:300].copy()
    x[200:] += np.linspace(0.0, 3.0, 100)  # a slow drift to values never seen: little forecast surprise
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    on = SelectiveUpdateNAB(seed=0, seasonal=False, **params).run(x, probationary=100)
    off = SelectiveUpdateNAB(seed=0, seasonal=False, spatial_tolerance=None, **params).run(x, probationary=100)
    assert ((on == off) | (on == 1.0)).all()
    assert (on == 1.0).sum() > (off == 1.0).sum() + 10
