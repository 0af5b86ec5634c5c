"""Retention table: each variant's mean return over seeds as a share of a baseline variant's, per env.

Reads the JSON lines that ``scripts/rl_quality.py`` writes (a repeated ``(env, variant, seed)``
counts once, the latest row) and prints a Markdown table: per env and variant the number of
seeds, the mean return, the returns per seed and the mean as a share of the baseline's mean.

Usage::

    python scripts/retention_table.py docs/results/issue12/cartpole_novel.jsonl --baseline gru \\
        --variants gru-router0.5 gru-router0.25 gru-router0.1 --pivot
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load_rows(paths: list[Path]) -> dict[tuple[str, str], list[dict]]:
    """Rows by ``(env_id, variant)``, the latest row per seed."""
    latest = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["env_id"], row["variant"], row["seed"])] = row
    groups = defaultdict(list)
    for (env_id, variant, _), row in sorted(latest.items()):
        groups[(env_id, variant)].append(row)
    return groups


def table(groups: dict[tuple[str, str], list[dict]], baseline: str, variants: list[str] | None) -> str:
    """The Markdown table (one line per env and variant)."""
    lines = [f"| env | variant | seeds | mean return | per seed | share of {baseline} |",
             "| --- | --- | ---: | ---: | --- | ---: |"]
    envs = sorted({env for env, _ in groups})
    for env in envs:
        base = groups.get((env, baseline))
        base_mean = float(np.mean([r["mean_return"] for r in base])) if base else None
        names = [baseline] + [v for v in (variants or sorted({v for e, v in groups if e == env})) if v != baseline]
        for name in names:
            rows = groups.get((env, name))
            if not rows:
                continue
            returns = [r["mean_return"] for r in rows]
            mean = float(np.mean(returns))
            share = f"{mean / base_mean:.2f}" if base_mean else "-"
            lines.append(f"| {env} | {name} | {len(rows)} | {mean:.3g} | {', '.join(f'{x:.3g}' for x in returns)} "
                         f"| {share} |")
    return "\n".join(lines)


def pivot(groups: dict[tuple[str, str], list[dict]], baseline: str, variants: list[str]) -> str:
    """One line per env: the baseline's mean (per seed), then each variant's mean (share of the baseline)."""
    lines = [f"| env | {baseline} | " + " | ".join(variants) + " |", "| --- |" + " --- |" * (len(variants) + 1)]
    for env in sorted({env for env, _ in groups}):
        base = groups.get((env, baseline))
        if not base:
            continue
        returns = [r["mean_return"] for r in base]
        base_mean = float(np.mean(returns))
        cells = [f"{base_mean:.3g} ({', '.join(f'{x:.3g}' for x in returns)})"]
        for name in variants:
            rows = groups.get((env, name))
            mean = float(np.mean([r["mean_return"] for r in rows])) if rows else None
            cells.append("-" if mean is None else f"{mean:.3g} ({mean / base_mean:.2f})" + (
                f" [{len(rows)} seeds]" if len(rows) != len(base) else ""))
        lines.append(f"| {env} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="JSON-lines files of scripts/rl_quality.py")
    parser.add_argument("--baseline", default="gru", help="the variant the shares are of")
    parser.add_argument("--variants", nargs="+", default=None, help="variants to list (default: all)")
    parser.add_argument("--pivot", action="store_true",
                        help="one line per env, one column per variant: mean (share of the baseline); needs --variants")
    args = parser.parse_args(argv)
    if args.pivot and not args.variants:
        parser.error("--pivot needs --variants")
    groups = load_rows(args.files)
    print(pivot(groups, args.baseline, args.variants) if args.pivot else table(groups, args.baseline, args.variants))


if __name__ == "__main__":
    main()
