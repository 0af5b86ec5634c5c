#!/usr/bin/env python
"""Benchmark streaming anomaly detectors on a NAB-format corpus.

Run detectors (each file streamed causally; the probationary period may be
used for fitting) and score them::

    python scripts/run_nab.py --data ../shared/data/nab --detectors iforest halfspacetrees \
        --results-out runs/nab --json runs/nab.json

or run the selective-update chain with other settings (keyword arguments of
``SelectiveUpdateNAB`` and of its detector, values in JSON), e.g. a routed
forecaster scored without window novelty, seasonal surprise or spatial rule::

    python scripts/run_nab.py --data ../shared/data/nab --detectors surnn \
        --params router_keep=0.1 novelty=false seasonal=false spatial_tolerance=null

or score an existing NAB-format results folder (one subfolder per detector)::

    python scripts/run_nab.py --data ../shared/data/nab --score ../shared/data/nab/results

The table gives the NAB score of each profile (thresholds optimised on these
files), and the mean VUS-PR and AUC-PR over files, beside the reference
detectors of the corpus (``reference_scores.json``; their VUS-PR and AUC-PR
from the corpus' ``results/`` folder).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sparsernn.detectors.nab.baselines import run_corpus
from sparsernn.detectors.nab.corpus import (
    PROFILE_NAMES,
    list_result_detectors,
    load_nab_corpus,
    load_reference_scores,
    read_results,
    write_results,
)
from sparsernn.detectors.nab.registry import DETECTORS
from sparsernn.detectors.nab.scoring import range_metrics, summarize

COLUMNS = (*PROFILE_NAMES, "vus_pr", "auc_pr")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NAB-format corpus folder")
    parser.add_argument(
        "--detectors", nargs="+", metavar="NAME",
        help=f"detectors to run (default: all of {', '.join(DETECTORS)}); with --score, subfolders to score",
    )
    parser.add_argument("--results-out", type=Path, metavar="DIR", help="write NAB-format results here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the scores as JSON")
    parser.add_argument("--score", type=Path, metavar="DIR", help="score this NAB results folder instead of running")
    parser.add_argument("--seed", type=int, default=0, help="seed given to every detector (default 0)")
    parser.add_argument(
        "--files", nargs="+", metavar="PATTERN",
        help='only these files, e.g. "realKnownCause/nyc_taxi.csv" or "artificial*/*"',
    )
    parser.add_argument("--sliding-window", type=int, default=100, help="VUS-PR's largest border (default 100)")
    parser.add_argument(
        "--params", nargs="+", metavar="KEY=VALUE", default=[],
        help="keyword arguments given to every detector run, each VALUE in JSON (e.g. router_keep=0.1 "
             "novelty=false spatial_tolerance=null); the detector's row is labelled with them",
    )
    args = parser.parse_args(argv)
    if args.score is None and args.detectors:
        unknown = sorted(set(args.detectors) - set(DETECTORS))
        if unknown:
            parser.error(f"unknown detectors {unknown}; available: {sorted(DETECTORS)}")
    if args.score is not None and args.results_out is not None:
        parser.error("--results-out writes detector output; it cannot be combined with --score")
    if args.score is not None and args.params:
        parser.error("--params sets up detectors to run; it cannot be combined with --score")
    args.params = parse_params(parser, args.params)
    for detector in (args.detectors or list(DETECTORS)) if args.params else ():
        try:  # fail before any file runs: the factory checks its arguments
            DETECTORS[detector](args.seed, **args.params)
        except (TypeError, ValueError) as error:
            parser.error(f"--params {sorted(args.params)} do not suit detector {detector!r}: {error}")
    return args


def parse_params(parser: argparse.ArgumentParser, items: list[str]) -> dict:
    """``["router_keep=0.1", "novelty=false"]`` -> ``{"router_keep": 0.1, "novelty": False}`` (values in JSON)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--params takes KEY=VALUE items; got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--params {key}: the value must be JSON (e.g. 0.1, false, null, [1.0, 0.1]); got {value!r}")
    return params


def label(detector: str, params: dict) -> str:
    """The row name of ``detector`` run with ``params``: ``surnn(router_keep=0.1,novelty=false)``."""
    if not params:
        return detector
    settings = ",".join(f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in params.items())
    return f"{detector}({settings})"


def reference_rows(args: argparse.Namespace, corpus) -> dict[str, dict[str, float]]:
    """NAB's reference scores of the corpus (all files only), with VUS-PR/AUC-PR from its results/."""
    reference = load_reference_scores(args.data)
    if reference is None or args.files is not None:
        return {}
    rows = {}
    for detector, scores in reference.get("optimized_on_these_files", {}).items():
        row = {profile: scores.get(profile, float("nan")) for profile in PROFILE_NAMES}
        try:
            results = read_results(args.data / "results", detector, corpus)
            row.update(range_metrics(results, corpus, args.sliding_window))
        except (FileNotFoundError, ValueError):
            row.update(vus_pr=float("nan"), auc_pr=float("nan"))
        rows[detector] = row
    return rows


def render(summaries: dict, references: dict, seconds: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("detector", no_wrap=True)
    timed = ("time (s)",) if seconds else ()
    for column in ("standard", "low FP", "low FN", "VUS-PR", "AUC-PR", *timed):
        table.add_column(column, justify="right")

    def cells(row: dict) -> list[str]:
        nab = [f"{row[p]:.2f}" for p in PROFILE_NAMES]
        return nab + [f"{row[m]:.3f}" if row[m] == row[m] else "-" for m in ("vus_pr", "auc_pr")]

    for detector, row in summaries.items():
        table.add_row(detector, *cells(row), *([f"{seconds[detector]:.1f}"] if seconds else []))
    for detector, row in references.items():
        table.add_row(f"[dim]{detector} (reference)[/dim]", *cells(row), *(["-"] if seconds else []))
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        corpus = load_nab_corpus(args.data, files=args.files)
    except (FileNotFoundError, ValueError) as error:  # a missing folder, a header-only or malformed file
        print(f"error: {error}", file=sys.stderr)
        return 2
    summaries, seconds = {}, {}
    if args.score is not None:
        for detector in args.detectors or list_result_detectors(args.score):
            results = read_results(args.score, detector, corpus)
            summaries[detector] = summarize(results, corpus, detector, args.sliding_window)
        title = f"NAB scores (thresholds optimised) of {args.score} on {len(corpus)} files"
    else:
        for detector in args.detectors or list(DETECTORS):
            row = label(detector, args.params)
            start = time.perf_counter()
            progress = lambda names: tqdm(names, desc=row, unit="file", file=sys.stderr)  # noqa: E731
            factory = functools.partial(DETECTORS[detector], **args.params)
            scores = run_corpus(factory, corpus, args.seed, progress)
            seconds[row] = time.perf_counter() - start
            if args.results_out is not None:
                for name, file_scores in scores.items():
                    write_results(args.results_out, row, corpus[name], file_scores)
            summaries[row] = summarize(scores, corpus, row, args.sliding_window)
        title = f"NAB benchmark on {len(corpus)} files (thresholds optimised on these files)"

    Console().print(render(summaries, reference_rows(args, corpus), seconds, title))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {d: {c: float(row[c]) for c in COLUMNS} for d, row in summaries.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
