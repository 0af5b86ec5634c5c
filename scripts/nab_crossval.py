#!/usr/bin/env python
"""Leave-one-category-out cross-validated NAB scores of a knob grid and of fixed detectors.

Each fold holds out one category of the corpus, chooses the configuration and
the threshold on the other categories (NAB's sweep, one threshold shared by
the training files) and scores the held-out files with them; the four folds'
raw scores are summed and normalised with the null and perfect detectors over
all files (``sparsernn.detectors.nab.crossval``). Beside it, the in-sample score
(configuration and threshold chosen on all files, scored there: NAB's protocol
plus a knob search).

Rows: the selective-update chain over the whole grid (one row, the knobs chosen
per fold), optionally the grid split by one knob's value (``--split-by``), each
fixed configuration (ablations: one candidate, only the threshold is chosen),
the reference detectors of the corpus' ``results/`` folder and, optionally, the
package's baselines. The chain's scores are cached per configuration under
``--cache`` (NAB-format results folders), so reruns and larger grids reuse them::

    python scripts/nab_crossval.py --data ../shared/data/nab --grid-file docs/results/issue14/loco_grid.json \
        --split-by update_gate --baselines iforest lstm halfspacetrees --json docs/results/issue14/loco.json

    python scripts/nab_crossval.py --data ../shared/data/nab --grid surprise_weight=0.5,0.8 seasonal=true,false

A grid file (JSON or YAML) holds ``{"grid": {key: [values]}, "fixed": {name: {key: value}}}``;
``--grid KEY=V1,V2`` values are JSON (``true``, ``null``, ``"event"``; use a grid file for list values).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from sparsernn.detectors.nab.corpus import PROFILE_NAMES, list_result_detectors, load_nab_corpus, read_results
from sparsernn.detectors.nab.crossval import cached_scores, config_label, expand_grid, leave_one_category_out
from sparsernn.detectors.nab.registry import BASELINES

CHAIN = "surnn"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="NAB-format corpus folder")
    parser.add_argument("--grid-file", type=Path, help='JSON/YAML {"grid": {key: [values]}, "fixed": {name: {..}}}')
    parser.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="grid axes over the grid file's (values in JSON)")
    parser.add_argument("--split-by", metavar="KEY", help="also cross-validate the grid split by this key's values")
    parser.add_argument("--cache", type=Path, default=Path("runs/nab_cache"), help="score cache (default runs/nab_cache)")
    parser.add_argument("--references", nargs="*", metavar="NAME",
                        help="detectors of <data>/results to score (default: all there)")
    parser.add_argument("--baselines", nargs="*", default=[], choices=sorted(BASELINES), metavar="NAME",
                        help=f"package baselines to run and score ({', '.join(BASELINES)})")
    parser.add_argument("--profiles", nargs="+", default=list(PROFILE_NAMES), choices=PROFILE_NAMES)
    parser.add_argument("--seed", type=int, default=0, help="seed of every detector run (default 0)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every row, fold and the run's context")
    args = parser.parse_args(argv)
    spec = {"grid": {}, "fixed": {}}
    if args.grid_file is not None:
        try:
            loaded = yaml.safe_load(args.grid_file.read_text())  # JSON is YAML
        except (OSError, yaml.YAMLError) as error:
            parser.error(f"--grid-file {args.grid_file}: {error}")
        if not isinstance(loaded, dict) or not set(loaded) & {"grid", "fixed"}:
            parser.error(f'--grid-file must hold {{"grid": {{...}}, "fixed": {{...}}}}; got {str(loaded)[:80]}')
        spec["grid"].update(loaded.get("grid") or {})
        spec["fixed"].update(loaded.get("fixed") or {})
    for item in args.grid:
        key, sep, values = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--grid takes KEY=V1,V2 items; got {item!r}")
        try:
            spec["grid"][key] = [json.loads(v) for v in values.split(",")]
        except json.JSONDecodeError:
            parser.error(f"--grid {key}: each value must be JSON (0.5, true, null, \"event\"); got {values!r}")
    try:
        args.configs = expand_grid(spec["grid"]) if spec["grid"] else []
    except ValueError as error:
        parser.error(f"--grid: {error}")
    args.fixed = spec["fixed"]
    if args.split_by is not None and args.split_by not in spec["grid"]:
        parser.error(f"--split-by {args.split_by!r} is not a grid key (keys: {sorted(spec['grid'])})")
    return args


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def context(argv: list[str] | None) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import torch
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "command": "python scripts/nab_crossval.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}",
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def run_rows(args: argparse.Namespace, corpus) -> dict[str, dict]:
    """{row name: {profile: CrossValidation}}, with the candidates' scores computed or read from the cache."""
    chain_configs = list(args.configs) + [p for p in args.fixed.values() if p not in args.configs]
    scores = {}
    for params in tqdm(chain_configs, desc="configurations", unit="config", file=sys.stderr):
        label = config_label(CHAIN, params)
        progress = lambda names: tqdm(names, desc=label, unit="file", leave=False, file=sys.stderr)  # noqa: E731
        scores[label] = cached_scores(corpus, args.cache, CHAIN, params, args.seed, progress=progress)
    groups: dict[str, dict] = {}
    if args.configs:
        groups[f"{CHAIN}: grid ({len(args.configs)} configs)"] = {config_label(CHAIN, p): scores[config_label(CHAIN, p)]
                                                                  for p in args.configs}
    if args.split_by is not None:
        for value in dict.fromkeys(json.dumps(p[args.split_by]) for p in args.configs):
            part = [p for p in args.configs if json.dumps(p[args.split_by]) == value]
            groups[f"{CHAIN}: grid with {args.split_by}={value} ({len(part)} configs)"] = {
                config_label(CHAIN, p): scores[config_label(CHAIN, p)] for p in part}
    for name, params in args.fixed.items():
        groups[f"{CHAIN} {name}"] = {config_label(CHAIN, params): scores[config_label(CHAIN, params)]}
    for name in args.baselines:
        groups[name] = {name: cached_scores(corpus, args.cache, name, {}, args.seed)}
    results_dir = args.data / "results"
    references = list_result_detectors(results_dir) if args.references is None else args.references
    for name in references:
        groups[f"{name} (reference)"] = {name: read_results(results_dir, name, corpus)}
    return {row: {p: leave_one_category_out(cands, corpus, p) for p in args.profiles} for row, cands in groups.items()}


def render(rows: dict, profiles: list[str]) -> Table:
    table = Table(title="NAB, leave-one-category-out: cross-validated (held-out) | in-sample (chosen on all files)")
    table.add_column("row", no_wrap=True)
    for p in profiles:
        table.add_column(f"{p} CV", justify="right")
        table.add_column(f"{p} in-sample", justify="right")
    for row, by_profile in rows.items():
        cells = []
        for p in profiles:
            cells += [f"{by_profile[p].score:.2f}", f"{by_profile[p].in_sample_score:.2f}"]
        table.add_row(row, *cells)
    return table


def render_folds(rows: dict, profile: str) -> Table:
    table = Table(title=f"Folds ({profile}): chosen on the other three categories, scored on the held-out one")
    for column in ("row", "held out", "chosen", "threshold", "train score", "held-out raw", "held-out score"):
        table.add_column(column, justify="left" if column in ("row", "held out", "chosen") else "right",
                         overflow="fold")
    for row, by_profile in rows.items():
        for fold in by_profile[profile].folds:
            table.add_row(row, fold.held_out, fold.config, f"{fold.threshold:.4f}", f"{fold.train_score:.2f}",
                          f"{fold.raw_score:.2f}", "-" if fold.score != fold.score else f"{fold.score:.2f}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        corpus = load_nab_corpus(args.data)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = run_rows(args, corpus)
    console = Console(width=200)
    console.print(render(rows, args.profiles))
    console.print(render_folds(rows, "standard" if "standard" in args.profiles else args.profiles[0]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"context": context(argv), "n_files": len(corpus),
                   "rows": {row: {p: cv.as_dict() for p, cv in by_profile.items()} for row, by_profile in rows.items()}}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
