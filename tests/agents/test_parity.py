"""agents/parity.py: the statistics behind rl_quality.py --parity (issue 15, item 1)."""
import numpy as np
import pytest
from scipy import stats

from sparsernn.agents.parity import markdown, mean_interval, parity_rows, welch


def rows(env, variant, returns, seconds=1.0):
    return [{"env_id": env, "variant": variant, "seed": s, "mean_return": r, "seconds": seconds}
            for s, r in enumerate(returns)]


def test_welch_matches_scipy_one_sided_test_and_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 5), rng.normal(0.8, 2.0, 7)
    out = welch(a, b)
    assert out["p_below"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue, rel=1e-10)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (out["diff_low"], out["diff_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert out["diff"] == pytest.approx(a.mean() - b.mean())


def test_mean_interval_is_student_t_and_collapses_without_spread():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    mean, low, high = mean_interval(values)
    expected = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected, rel=1e-12) and mean == 3.5
    assert mean_interval(np.array([2.0, 2.0])) == (2.0, 2.0, 2.0)


def test_a_variant_clearly_below_stock_is_flagged_and_one_level_with_it_is_not():
    data = (rows("E", "stock-lstm", [1.0, 1.1, 0.9, 1.05, 0.95], seconds=10.0)
            + rows("E", "lstm", [0.5, 0.6, 0.4, 0.55, 0.45], seconds=2.0)
            + rows("E", "gru", [1.0, 1.12, 0.88, 1.0, 1.0], seconds=2.5))
    table = {r["variant"]: r for r in parity_rows(data, "stock-lstm")}
    assert set(table) == {"lstm", "gru"}
    assert table["lstm"]["below"] and table["lstm"]["p_below"] < 1e-4
    assert not table["gru"]["below"] and table["gru"]["p_below"] > 0.3
    assert table["lstm"]["speed_ratio"] == 5.0 and table["gru"]["speed_ratio"] == 4.0
    text = markdown(list(table.values()))
    assert text.count("\n") == 4 and "**yes**" in text


def test_constant_returns_compare_exactly_and_envs_do_not_mix():
    data = rows("A", "stock-lstm", [1.0, 1.0]) + rows("A", "gru", [0.9, 0.9]) + rows("B", "gru", [5.0, 5.0])
    table = parity_rows(data)
    assert len(table) == 1 and table[0]["env"] == "A" and table[0]["below"] and table[0]["p_below"] == 0.0
