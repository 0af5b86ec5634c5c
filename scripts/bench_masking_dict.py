"""Training throughput of action masking and of Dict observations on the fast path (issue 16).

Two groups, each on its config (the settings of docs/rl_masking.md and docs/rl_dict_observations.md):

- ``masks`` (``agents/configs/masked_cue_memory.yaml``): ``SparseRecurrentPPO`` acting without masks,
  ``MaskableSparseRecurrentPPO`` acting under them (``env_method("action_masks")`` every step, masked
  heads, masks in the buffer and the loss), and sb3-contrib's ``RecurrentPPO`` (``MlpLstmPolicy``).
- ``dict`` (``agents/configs/dict_cue_memory.yaml``): ``SparseRecurrentPPO`` (whole-column buffer, one
  array per key), the same policy inside sb3-contrib's ``RecurrentPPO`` (its padded
  ``RecurrentDictRolloutBuffer``: the path Dict spaces took before), and sb3-contrib's
  ``RecurrentPPO`` with its ``MultiInputLstmPolicy``.

Models of a group train in turns of ``--chunk`` steps (``sparsernn.benchmarking.interleaved_round``)
after an untimed warm-up; the median env-steps/s over ``--repeats`` rounds is printed with its ratio to
the group's first model.

Usage::

    python scripts/bench_masking_dict.py --steps 4096 --repeats 3 --threads 1 \\
        --json docs/results/issue16/bench_masking_dict.json
"""
from __future__ import annotations

import argparse
import statistics

import torch

from sparsernn.agents import ALGOS, load_config, make_env
from sparsernn.agents.config import CONFIG_DIR, parse_policy_kwargs, parse_ppo_kwargs
from sparsernn.agents.ppo import StockRecurrentPPO
from sparsernn.benchmarking import interleaved_round, machine_info, write_json
from sparsernn.policies import SparseRecurrentPolicy

#: group -> (config file, {model name: (algorithm class, policy, whether the policy is ours)}); the first
#: model of a group is the one the others are compared with.
GROUPS = {
    "masks": ("masked_cue_memory.yaml", {
        "sparse-unmasked": (ALGOS["sparse"], "SparseRecurrentPolicy", True),
        "maskable": (ALGOS["maskable"], "MaskableSparseRecurrentPolicy", True),
        "stock-lstm": (StockRecurrentPPO, "MlpLstmPolicy", False)}),
    "dict": ("dict_cue_memory.yaml", {
        "sparse": (ALGOS["sparse"], "SparseRecurrentPolicy", True),
        "sparse-policy-padded": (StockRecurrentPPO, SparseRecurrentPolicy, True),
        "stock-lstm": (StockRecurrentPPO, "MultiInputLstmPolicy", False)}),
}


def build(config: dict, algo: type, policy: object, ours: bool, seed: int, warmup: int):
    """A model on a fresh env of ``config`` after ``warmup`` untimed steps (compilation, first rollouts)."""
    env = make_env(config["env_id"], config["n_envs"], seed)
    policy_kwargs = dict(config["policy_kwargs"])
    if not ours:  # sb3-contrib's LSTM policies call the width lstm_hidden_size
        policy_kwargs = {"lstm_hidden_size": policy_kwargs.pop("hidden_size")}
    model = algo(policy, env, seed=seed, device="cpu", policy_kwargs=parse_policy_kwargs(policy_kwargs),
                 **parse_ppo_kwargs(config["ppo_kwargs"]))
    model.learn(warmup)
    return model, env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--steps", type=int, default=4096, help="timed env steps per model and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (the median is reported)")
    parser.add_argument("--chunk", type=int, default=1024, help="env steps per turn within a round")
    parser.add_argument("--warmup", type=int, default=1024, help="untimed env steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 leaves torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.chunk) < 1 or args.warmup < 0:
        parser.error(f"--steps, --repeats, --chunk must be >= 1 and --warmup >= 0; got {args.steps}, "
                     f"{args.repeats}, {args.chunk}, {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for group in args.groups:
        config_file, entries = GROUPS[group]
        config = load_config(CONFIG_DIR / config_file)
        models = {name: build(config, *entry, args.seed, args.warmup) for name, entry in entries.items()}
        rounds: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.repeats):
            speeds = interleaved_round({name: model for name, (model, _) in models.items()}, args.steps, args.chunk)
            for name, speed in speeds.items():
                rounds[name].append(speed)
        for _, env in models.values():
            env.close()
        first = next(iter(rounds))
        print(f"\n[{group}] {config['env_id']}\n{'model':>22s} {'env-steps/s':>12s} {'x ' + first:>22s}")
        for name, speeds in rounds.items():
            ratios = [ours / theirs for ours, theirs in zip(speeds, rounds[first])]
            print(f"{name:>22s} {statistics.median(speeds):12.1f} {statistics.median(ratios):22.2f}")
            results.append({"group": group, "model": name, "config": config_file,
                            "rounds_steps_per_s": speeds, "steps_per_s": statistics.median(speeds),
                            "round_ratios_to_first": ratios})
    write_json(args.json, {"meta": {**machine_info(), "steps": args.steps, "repeats": args.repeats,
                                    "chunk": args.chunk, "warmup": args.warmup, "seed": args.seed},
                           "results": results})


if __name__ == "__main__":
    main()
