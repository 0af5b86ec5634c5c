"""SeasonalSurprise: residual against one period earlier, causal, per stream, period from timestamps."""
import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors import SeasonalSurprise, StreamScorer
from sparsernn.detectors.stream import rows_per_season

DAY = 24  # hourly points


def daily_series(days: int = 12, seed: int = 0) -> np.ndarray:
    """An hourly series that repeats exactly every day (a smooth daily shape plus a fixed daily pattern)."""
    rng = np.random.default_rng(seed)
    one_day = np.sin(2 * np.pi * np.arange(DAY) / DAY) + 0.3 * rng.standard_normal(DAY)
    return np.tile(one_day, days)


def seasonal_part(fitted, x, **kwargs) -> np.ndarray:
    """The seasonal surprise alone: the wrapper's surprise minus the scorer's."""
    index = pd.date_range("2024-01-01", periods=len(x), freq="h")
    total = SeasonalSurprise(StreamScorer(fitted), **kwargs).score_then_learn(pd.Series(x, index=index)).to_numpy()
    return total - StreamScorer(fitted).score_then_learn(x)


def reference(x: np.ndarray, period: int, memory: int) -> np.ndarray:
    """The definition, plainly, for one channel."""
    out, var, n = np.zeros(len(x)), 0.0, 0
    for t in range(len(x)):
        if t >= period:
            r = x[t] - x[t - period]
            if n > 0:
                out[t] = min(0.5 * r * r / max(var, 1e-12), 1e6)
            weight = 1.0 / min(n + 1, memory)
            var = (1.0 - weight) * var + weight * r * r
            n += 1
    return out


def test_rows_per_season_from_the_median_step():
    assert rows_per_season(pd.date_range("2024-01-01", periods=50, freq="5min")) == 288
    stamps = pd.date_range("2024-01-01", periods=50, freq="h").append(pd.DatetimeIndex(["2024-01-03 02:07"]))
    assert rows_per_season(stamps) == 24  # one odd step does not move the median
    assert rows_per_season(pd.date_range("2024-01-01", periods=5, freq="h"), season="7D") == 168
    with pytest.raises(ValueError, match="at least 2"):
        rows_per_season(pd.DatetimeIndex(["2024-01-01"]))


def test_a_series_that_repeats_daily_scores_zero_except_where_the_pattern_breaks(fitted):
    x = daily_series()
    broken = x.copy()
    broken[9 * DAY + 5: 9 * DAY + 9] = broken[9 * DAY + 5: 9 * DAY + 9][::-1] + 1.0  # hours 5-8 of day 9
    clean = seasonal_part(fitted, x)  # period 24 from the hourly index
    assert np.abs(clean).max() < 1e-9
    seasonal = seasonal_part(fitted, broken)
    inside = np.zeros(len(x), bool)
    inside[9 * DAY + 5: 9 * DAY + 9] = inside[10 * DAY + 5: 10 * DAY + 9] = True  # the break, and its echo a day on
    assert np.abs(seasonal[~inside]).max() < 1e-9
    assert seasonal[9 * DAY + 5] == 1e6  # the variance was 0 until then: the cap
    assert seasonal[9 * DAY + 5: 9 * DAY + 9].min() > 10  # then it learns the first residuals, and stays high


def test_matches_the_definition_and_is_causal(fitted, series):
    x = series[0][:400]
    np.testing.assert_allclose(seasonal_part(fitted, x, period=40, memory=50), reference(x, 40, 50),
                               rtol=1e-12, atol=1e-12)
    changed = x.copy()
    changed[300:] += 5.0
    np.testing.assert_array_equal(seasonal_part(fitted, changed, period=40)[:300],
                                  seasonal_part(fitted, x, period=40)[:300])


def test_block_equals_point_by_point_and_streams_are_independent(fitted, series):
    x = np.stack([series[0][:200], series[0][:200][::-1] * 2], axis=1)
    block = SeasonalSurprise(StreamScorer(fitted), period=30, memory=40)
    blocks = np.concatenate([block.process(part, streams=["a", "b"]) for part in np.array_split(x, 5)])
    for column, name in enumerate("ab"):
        point = SeasonalSurprise(StreamScorer(fitted), memory=40)
        point.set_period(name, 30)
        singles = []
        for value in x[:, column]:
            score = point.score_one(value, stream=name)
            assert point.score_one(value, stream=name) == score
            singles.append(score)
            point.learn_one(value, stream=name)
        np.testing.assert_array_equal(blocks[:, column], singles)


def test_streams_get_their_own_period_from_timestamps(fitted, series):
    x = series[0][:120]
    stream = SeasonalSurprise(StreamScorer(fitted))
    hourly = pd.date_range("2024-01-01", periods=120, freq="h")
    stream.process(np.stack([x, x], 1), streams=["h", "m"],
                   timestamps=np.stack([hourly, pd.date_range("2024-01-01", periods=120, freq="30min")], 1))
    assert stream.period.tolist() == [24, 48]


def test_without_a_period_or_timestamps_the_call_is_rejected_unchanged(fitted, series):
    stream = SeasonalSurprise(StreamScorer(fitted))
    with pytest.raises(ValueError, match="no period"):
        stream.process(series[0][:50, None])
    with pytest.raises(ValueError, match="no period"):
        stream.learn_one(0.5, stream="x")
    assert stream._scorer.count.sum() == 0 and stream.seen.sum() == 0
    with pytest.raises(ValueError, match="cannot change"):
        stream.set_period(0, 10)
        stream.learn_one(0.5)
        stream.set_period(0, 11)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(period=0), ValueError, "period"), (dict(period=2.5), TypeError, "period"),
    (dict(season="soon"), TypeError, "season"), (dict(season="-1D"), ValueError, "season"),
    (dict(memory=0), ValueError, "memory"), (dict(min_var=0.0), ValueError, "min_var"),
    (dict(max_surprise="big"), TypeError, "max_surprise")])
def test_bad_settings_are_rejected(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        SeasonalSurprise(StreamScorer(fitted), **kwargs)
