"""NAB retention of routed detectors: the routed chain's NAB score over the dense chain's.

Each run is one ``scripts/run_nab.py`` command (the selective-update chain ``surnn``
on the whole corpus, one seed), with ``--params router_keep=<keep>`` for a routed
forecaster; ``--forecaster-only`` chains also switch off window novelty, seasonal
surprise and the spatial rule (forecaster + likelihood), so that the retention
measures the recurrent model rather than the chain's other parts. One JSON line
per run (its command and scores) is appended to ``--out``; runs already there
are skipped, so an interrupted sweep resumes. ``--summary`` prints the table of
means and retentions (routed / dense, per chain) and writes it as JSON.

Usage::

    python scripts/nab_retention.py --data ../shared/data/nab --keeps 0.5 0.25 0.1 --seeds 0 1 2 \\
        --out docs/results/issue12/nab_runs.jsonl
    python scripts/nab_retention.py --summary --out docs/results/issue12/nab_runs.jsonl \\
        --json docs/results/issue12/nab_retention.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHAINS = {"full": [], "forecaster-only": ["novelty=false", "seasonal=false", "spatial_tolerance=null"]}
METRICS = ("standard", "reward_low_FP_rate", "reward_low_FN_rate", "vus_pr", "auc_pr")


def command(data: Path, chain: str, keep: float | None, seed: int) -> list[str]:
    """The ``run_nab.py`` command line of one run (without ``--json``)."""
    params = ([f"router_keep={keep}"] if keep is not None else []) + CHAINS[chain]
    return ["scripts/run_nab.py", "--data", str(data), "--detectors", "surnn", "--seed", str(seed),
            *(["--params", *params] if params else [])]


def run(data: Path, chain: str, keep: float | None, seed: int) -> dict:
    argv = command(data, chain, keep, seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.json"
        subprocess.run([sys.executable, *argv, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
        (scores,) = json.loads(out.read_text()).values()
    return {"chain": chain, "router_keep": keep, "seed": seed, "command": "python " + " ".join(argv),
            "scores": scores}


def summary(records: list[dict]) -> dict:
    """Per chain and keep: mean scores over seeds, the seeds, and the retention of each metric."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r["chain"], {}).setdefault(r["router_keep"], []).append(r)
    table = {}
    for chain, by_keep in groups.items():
        dense = by_keep.get(None)
        rows = {}
        for keep, runs in sorted(by_keep.items(), key=lambda kv: -1.0 if kv[0] is None else -kv[0]):
            seeds = sorted(r["seed"] for r in runs)
            mean = {m: float(np.mean([r["scores"][m] for r in runs])) for m in METRICS}
            row = {"seeds": seeds, "mean": mean, "per_seed": {r["seed"]: r["scores"]["standard"] for r in runs}}
            if dense is not None and keep is not None:
                common = sorted(set(seeds) & {r["seed"] for r in dense})
                pick = lambda rs: float(np.mean([r["scores"]["standard"] for r in rs if r["seed"] in common]))  # noqa: E731
                row["retention_standard"] = pick(runs) / pick(dense)
                row["retention_seeds"] = common
            rows["dense" if keep is None else str(keep)] = row
        table[chain] = rows
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="NAB-format corpus folder")
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.25, 0.1], help="router_keep values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--chains", nargs="+", choices=list(CHAINS), default=list(CHAINS))
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per run (appended)")
    parser.add_argument("--summary", action="store_true", help="print the table of --out and stop")
    parser.add_argument("--json", type=Path, help="with --summary: write the table here")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.summary:
        if args.data is None:
            parser.error("--data is required to run")
        done = {(r["chain"], r["router_keep"], r["seed"]) for r in records}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            for chain in args.chains:
                for keep in [None, *args.keeps]:
                    if (chain, keep, seed) in done:
                        continue
                    record = run(args.data, chain, keep, seed)
                    with args.out.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    records.append(record)
                    print(f"{chain} keep={keep} seed={seed}: standard {record['scores']['standard']:.2f}", flush=True)
    table = summary(records)
    for chain, rows in table.items():
        print(f"\n{chain}: NAB standard (mean over seeds), retention = routed / dense")
        for keep, row in rows.items():
            retention = f"{row['retention_standard']:.3f}" if "retention_standard" in row else "-"
            seeds = " ".join(f"{s}:{v:.2f}" for s, v in sorted(row["per_seed"].items()))
            print(f"  {keep:>6}  {row['mean']['standard']:6.2f}  retention {retention}  seeds {seeds}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
