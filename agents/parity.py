"""Is a policy variant significantly below a reference (stock ``RecurrentPPO``) on a task? (issue 15, item 1)

The runs are ``scripts/rl_quality.py``'s rows (one per env, variant and seed: the mean deterministic return).
Per env and variant, against the reference variant's seeds on the same env:

- the mean return and its 95 % confidence interval (Student's t over seeds);
- the difference of means and its 95 % Welch confidence interval;
- Welch's one-sided t-test of "the variant's mean is below the reference's" (``p_below``); *below* when
  ``p_below < alpha`` (default 0.05);
- the wall-time ratio (reference seconds / variant seconds, means over runs; the runs need not have shared
  the machine evenly, so it is indicative; ``scripts/bench_rl.py`` measures speed).

A variant whose returns do not vary at all (every seed the same) against a reference that does not either is
compared exactly: below if its mean is lower.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from scipy import stats


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its Student-t interval (the mean itself for one value or no spread)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2 or values.std() == 0:
        return mean, mean, mean
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def welch(variant: np.ndarray, reference: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Difference of means ``variant - reference``, its Welch interval and the one-sided p of "variant below"."""
    a, b = np.asarray(variant, dtype=float), np.asarray(reference, dtype=float)
    diff = float(a.mean() - b.mean())
    va = a.var(ddof=1) / len(a) if len(a) > 1 else 0.0
    vb = b.var(ddof=1) / len(b) if len(b) > 1 else 0.0
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "diff_low": diff, "diff_high": diff, "p_below": 0.0 if diff < 0 else 1.0}
    dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if len(a) > 1 else 0.0)
                            + (vb ** 2 / (len(b) - 1) if len(b) > 1 else 0.0))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return {"diff": diff, "diff_low": diff - half, "diff_high": diff + half,
            "p_below": float(stats.t.cdf(diff / se, dof))}


def env_label(row: dict) -> str:
    """The env a row ran on: its id and, when given, its keyword arguments (``"id gap=200"``), and those
    of its evaluation where they differ (``"id gap=200 eval gap=5000"``)."""
    label = row["env_id"] + "".join(f" {k}={v}" for k, v in sorted((row.get("env_kwargs") or {}).items()))
    if row.get("eval_env_kwargs"):
        label += " eval" + "".join(f" {k}={v}" for k, v in sorted(row["eval_env_kwargs"].items()))
    return label


def parity_rows(rows: Iterable[dict], reference: str = "stock-lstm", alpha: float = 0.05) -> list[dict]:
    """Per (env, variant != reference): the comparison with the reference on that env (see the module)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(env_label(row), row["variant"])].append(row)
    out = []
    for (env, variant), group in sorted(groups.items()):
        ref = groups.get((env, reference))
        if variant == reference or not ref:
            continue
        returns = np.array([r["mean_return"] for r in group])
        ref_returns = np.array([r["mean_return"] for r in ref])
        mean, low, high = mean_interval(returns)
        ref_mean, ref_low, ref_high = mean_interval(ref_returns)
        test = welch(returns, ref_returns)
        out.append({"env": env, "variant": variant, "seeds": len(group), "mean": mean, "low": low, "high": high,
                    "reference": reference, "reference_seeds": len(ref), "reference_mean": ref_mean,
                    "reference_low": ref_low, "reference_high": ref_high, **test,
                    "below": test["p_below"] < alpha,
                    "speed_ratio": float(np.mean([r["seconds"] for r in ref]) / np.mean([r["seconds"] for r in group]))})
    return out


def markdown(table: list[dict], alpha: float = 0.05) -> str:
    """The comparison as a Markdown table."""
    lines = [f"| env | variant | seeds | mean [95 % CI] | stock mean [95 % CI] | difference [95 % Welch CI] | "
             f"p (below) | below at {alpha}? | time ratio |", "| --- | --- | ---: | --- | --- | --- | ---: | --- | ---: |"]
    for r in table:
        lines.append(f"| {r['env']} | {r['variant']} | {r['seeds']} | {r['mean']:.3g} [{r['low']:.3g}, {r['high']:.3g}] "
                     f"| {r['reference_mean']:.3g} [{r['reference_low']:.3g}, {r['reference_high']:.3g}] "
                     f"| {r['diff']:+.3g} [{r['diff_low']:+.3g}, {r['diff_high']:+.3g}] | {r['p_below']:.3f} "
                     f"| {'**yes**' if r['below'] else 'no'} | {r['speed_ratio']:.1f}x |")
    return "\n".join(lines) + "\n"
