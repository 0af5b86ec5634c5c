"""Learning quality: mean deterministic evaluation return of policy variants over seeds.

Each run trains with :func:`sparsernn.agents.train` from a YAML config (the env
and PPO hyperparameters) plus one variant's policy options, then evaluates
deterministically. One JSON line per run is appended to ``--out``; runs already
there are skipped, so an interrupted sweep resumes. ``--summary`` prints the
table of means from the file.

Usage::

    python scripts/rl_quality.py --config agents/configs/cartpole_novel.yaml \\
        --variants gru lstm gru-d0.1 gru-router0.1 gru-event --seeds 0 1 2 --out docs/rl_quality_cartpole.jsonl
    python scripts/rl_quality.py --summary --out docs/rl_quality_cartpole.jsonl
    # parity with stock RecurrentPPO: every variant against stock-lstm on the same env, rows of several files
    python scripts/rl_quality.py --summary --out docs/results/issue15/parity/*.jsonl --parity stock-lstm \
        --table docs/results/issue15/parity.md
"""
from __future__ import annotations

import argparse
import json
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from sparsernn.agents import load_config, train
from sparsernn.agents.parity import env_label, markdown, parity_rows
from sparsernn.agents.variants import VARIANTS, variant_policy_kwargs


def run(config: dict, variant: str, seed: int, steps: int | None, eval_episodes: int,
        save_dir: Path | None = None, verbose: int = 0, resume_dir: Path | None = None) -> dict:
    kwargs = {**config, "algo": VARIANTS[variant].algo, "policy": VARIANTS[variant].policy,
              "policy_kwargs": variant_policy_kwargs(variant, config.get("policy_kwargs", {})), "seed": seed,
              "ppo_kwargs": {**config.get("ppo_kwargs", {}), **VARIANTS[variant].ppo_kwargs},
              "eval_episodes": eval_episodes, "verbose": verbose}
    if steps:
        kwargs["total_timesteps"] = steps
    if save_dir is not None:
        kwargs.update(save_dir=save_dir / run_name(config, variant, seed), overwrite=True)
    resumed_steps = 0
    if resume_dir is not None:  # continue the saved run: its policy and PPO settings, steps added to its count
        path = resume_dir / run_name(config, variant, seed) / "model.zip"
        if not path.is_file():
            raise FileNotFoundError(f"--resume-dir: no saved model for {variant} seed {seed} at '{path}'")
        with zipfile.ZipFile(path) as archive:
            resumed_steps = int(json.loads(archive.read("data"))["num_timesteps"])
        kwargs.update(resume=path, policy=None, policy_kwargs=None, ppo_kwargs=None)
    start = time.perf_counter()
    result = train(**kwargs)
    evaluation = result.evaluation
    row = {"env_id": config["env_id"], "variant": variant, "seed": seed,
           "steps": resumed_steps + kwargs["total_timesteps"],
           "mean_return": evaluation.mean_return, "std_return": evaluation.std_return,
           "success_rate": evaluation.success_rate, "seconds": time.perf_counter() - start}
    if config.get("env_kwargs"):
        row["env_kwargs"] = config["env_kwargs"]
    if config.get("eval_env_kwargs"):  # evaluated on another variant of the env (e.g. a longer gap)
        row["eval_env_kwargs"] = config["eval_env_kwargs"]
    if resumed_steps:
        row["resumed_from_steps"] = resumed_steps  # "seconds" counts only the continuation
    return row


def run_key(row: dict) -> tuple[str, str, str, int, str]:
    """``(env_id, env_kwargs as JSON, variant, seed, eval_env_kwargs as JSON)``: what makes two rows the same
    run."""
    return (row["env_id"], json.dumps(row.get("env_kwargs") or {}, sort_keys=True), row["variant"], row["seed"],
            json.dumps(row.get("eval_env_kwargs") or {}, sort_keys=True))


def run_name(config: dict, variant: str, seed: int) -> str:
    """A folder name for one run's saved model: env, its keyword arguments, variant and seed."""
    kwargs = "".join(f"-{k}{v}" for k, v in sorted((config.get("env_kwargs") or {}).items()))
    return f"{config['env_id'].replace('/', '_')}{kwargs}-{variant}-s{seed}"


def finished_runs(path: Path) -> set[tuple[str, str, str, int, str]]:
    """:func:`run_key` of the runs already in ``path``."""
    if not path.exists():
        return set()
    return {run_key(json.loads(line)) for line in path.read_text().splitlines() if line.strip()}


def sweep(config: dict, variants: list[str], seeds: list[int], steps: int | None, eval_episodes: int, out: Path,
          save_dir: Path | None = None, verbose: int = 0, resume_dir: Path | None = None) -> None:
    """Train and evaluate every (variant, seed) not yet in ``out``, appending one JSON line each."""
    for variant in variants:
        for seed in seeds:
            row_key = run_key({"env_id": config["env_id"], "env_kwargs": config.get("env_kwargs"),
                               "eval_env_kwargs": config.get("eval_env_kwargs"),
                               "variant": variant, "seed": seed})
            if row_key in finished_runs(out):  # re-read: sweeps may run in parallel
                continue
            row = run(config, variant, seed, steps, eval_episodes, save_dir, verbose, resume_dir)
            with out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def read_rows(paths: list[Path]) -> list[dict]:
    """The rows of every file, a repeated run (same :func:`run_key`) counted once (the latest)."""
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    return list({run_key(r): r for r in rows}.values())


def summarize(paths: list[Path]) -> None:
    by_variant = defaultdict(list)
    for row in read_rows(paths):
        by_variant[(env_label(row), row["variant"])].append(row)
    print(f"{'env':>32s} {'variant':>14s} {'seeds':>5s} {'mean return':>12s} {'per seed':>24s} {'success':>8s}")
    for (env_id, variant), group in by_variant.items():
        means = [r["mean_return"] for r in group]
        success = [r["success_rate"] for r in group if r["success_rate"] is not None]
        success_text = f"{np.mean(success):8.2f}" if success else "       -"
        print(f"{env_id:>32s} {variant:>14s} {len(group):5d} {np.mean(means):12.1f} "
              f"{' '.join(f'{m:.3g}' for m in means):>24s} {success_text}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="agents/configs/cartpole_novel.yaml")
    parser.add_argument("--variants", nargs="+", default=["gru", "lstm", "gru-d0.1", "gru-router0.1", "gru-event"],
                        choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="override total_timesteps")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, nargs="+",
                        help="JSON-lines file (appended; with --summary, any number of files are read)")
    parser.add_argument("--summary", action="store_true", help="only print the table of --out")
    parser.add_argument("--parity", metavar="VARIANT", default=None,
                        help="with --summary: compare every variant with this one per env (agents/parity.py: "
                             "means, 95%% intervals, Welch's one-sided test of 'below')")
    parser.add_argument("--table", default=None, help="with --parity: write the comparison as Markdown here")
    parser.add_argument("--env-kwargs", type=json.loads, default=None,
                        help='JSON object replacing the config\'s env_kwargs, e.g. \'{"gap": 200}\'')
    parser.add_argument("--eval-env-kwargs", type=json.loads, default=None,
                        help="JSON object: evaluate on these env keyword arguments instead of training's, "
                             'e.g. \'{"gap": 5000}\' after teaching at a short gap')
    parser.add_argument("--save-dir", default=None, help="save each run's model under this folder")
    parser.add_argument("--resume-dir", default=None,
                        help="continue each run from the model a previous --save-dir left in this folder; "
                             "--steps (or the config's total_timesteps) are added to its step count")
    parser.add_argument("--verbose", type=int, default=0, help="SB3's training log (1: a table per rollout)")
    args = parser.parse_args(argv)
    outs = [Path(o) for o in args.out]
    if args.summary:
        summarize(outs)
        if args.parity:
            table = parity_rows(read_rows(outs), args.parity)
            text = markdown(table)
            print("\n" + text)
            if args.table:
                Path(args.table).write_text(text)
        return
    if len(outs) != 1:
        parser.error(f"--out takes one file when training; got {len(outs)}")
    out = outs[0]
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    if args.env_kwargs is not None:
        config["env_kwargs"] = args.env_kwargs
    if args.eval_env_kwargs is not None:
        config["eval_env_kwargs"] = args.eval_env_kwargs
    sweep(config, args.variants, args.seeds, args.steps, args.eval_episodes, out,
          None if args.save_dir is None else Path(args.save_dir), args.verbose,
          None if args.resume_dir is None else Path(args.resume_dir))
    summarize([out])


if __name__ == "__main__":
    main()
