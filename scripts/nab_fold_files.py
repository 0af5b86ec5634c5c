#!/usr/bin/env python
"""Per-file view of a leave-one-category-out run: where a fixed row gains or loses its held-out points.

For each fixed row named (a key of the grid file's ``fixed``) and each held-out category, the files of
that category scored at the threshold the fold chose on the other categories (read from the
``nab_crossval.py --json`` file): NAB's raw score, true / false positives and false negatives (NAB's counts),
and the rows at or above the threshold outside the labelled windows and after the probationary rows::

    python scripts/nab_fold_files.py --data ../shared/data/nab \\
        --grid-file docs/results/issue14/horizons_grid.json --cache runs/nab_cache_horizons \\
        --crossval docs/results/issue14/horizons_loco_seed0.json --seed 0 \\
        --rows default "surprise_weight=0" --held-out realKnownCause

The scores come from the same ``--cache`` as ``nab_crossval.py`` (computed there if missing).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from sparsernn.detectors.nab.corpus import load_nab_corpus
from sparsernn.detectors.nab.crossval import cached_scores, category_folds
from sparsernn.detectors.nab.scoring import score_at_threshold, sweep_file

CHAIN = "surnn"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NAB-format corpus folder")
    parser.add_argument("--grid-file", required=True, type=Path, help="the grid file of the crossval run")
    parser.add_argument("--cache", type=Path, default=Path("runs/nab_cache"), help="score cache (default runs/nab_cache)")
    parser.add_argument("--crossval", required=True, type=Path, help="the JSON nab_crossval.py wrote (the folds' thresholds)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of that run (default 0)")
    parser.add_argument("--rows", nargs="+", required=True, help="fixed rows of the grid file to show")
    parser.add_argument("--held-out", nargs="*", metavar="CATEGORY", help="categories to show (default: every fold)")
    parser.add_argument("--profile", default="standard", help="cost profile (default standard)")
    return parser.parse_args(argv)


def fold_thresholds(crossval: dict, row: str, profile: str) -> dict[str, float]:
    """Held-out category -> the threshold its fold chose, for fixed row ``row`` of a crossval JSON."""
    key = f"{CHAIN} {row}"
    if key not in crossval["rows"]:
        raise ValueError(f"--rows: {row!r} is not a row of the crossval file (rows: {sorted(crossval['rows'])})")
    return {fold["held_out"]: fold["threshold"] for fold in crossval["rows"][key][profile]["folds"]}


def held_out_files(corpus, cost, scores: dict, names: list[str], threshold: float) -> list[dict]:
    """Per file of ``names``: NAB's raw score and counts at ``threshold`` and the alarm rows outside the
    labelled windows after the probationary rows (``alarms``), as dicts."""
    rows = []
    for name in names:
        data = corpus[name]
        point = score_at_threshold(scores[name], sweep_file(data, cost), cost, threshold)
        alarm = (scores[name] >= threshold) & (data.labels == 0)
        alarm[:data.probationary_length] = False  # NAB does not score the probationary rows
        rows.append({"file": name, "score": point.score, "tp": point.tp, "fp": point.fp, "fn": point.fn,
                     "alarms": np.flatnonzero(alarm).tolist()})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fixed = yaml.safe_load(args.grid_file.read_text()).get("fixed", {})
    crossval = json.loads(args.crossval.read_text())
    corpus = load_nab_corpus(args.data)
    cost = corpus.profile(args.profile)
    folds = category_folds(corpus)
    held_out = args.held_out or list(folds)
    unknown = sorted(set(held_out) - set(folds))
    if unknown:
        raise SystemExit(f"--held-out: unknown categories {unknown} (known: {sorted(folds)})")
    console = Console()
    for row in args.rows:
        if row not in fixed:
            raise SystemExit(f"--rows: {row!r} is not a fixed row of {args.grid_file} ({sorted(fixed)})")
        thresholds = fold_thresholds(crossval, row, args.profile)
        scores = cached_scores(corpus, args.cache, CHAIN, fixed[row], args.seed)
        for category in held_out:
            threshold = thresholds[category]
            table = Table(title=f"{row}, seed {args.seed}: {category} held out, threshold {threshold:.4f}")
            for column in ("file", "raw score", "tp", "fp", "fn", "alarm rows outside the windows"):
                table.add_column(column, justify="left" if column in ("file", "alarm rows outside the windows") else "right")
            for row in held_out_files(corpus, cost, scores, folds[category], threshold):
                table.add_row(row["file"].split("/")[-1], f"{row['score']:+.3f}", str(row["tp"]), str(row["fp"]),
                              str(row["fn"]), " ".join(map(str, row["alarms"])))
            console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
