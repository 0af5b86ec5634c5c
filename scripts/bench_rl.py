"""Training throughput: stock RecurrentPPO vs SparseRecurrentPolicy variants vs feed-forward PPO.

All variants train on the same env with the same PPO hyperparameters (by
default the RL Zoo's CartPoleNoVel ppo_lstm settings, ``agents/configs/cartpole_novel.yaml``)
in one process. Each model is built and trains a short warm-up first (TorchScript /
torch.compile / the C++ build happen there); then ``--repeats`` rounds each train
every variant for ``--steps`` env steps. Within a round the variants take turns
of ``--chunk`` steps, so that a slow or fast spell of a shared machine (they last
seconds to minutes) falls on all variants alike rather than on whichever ran
then. Prints the median env-steps/s of each variant, the ratio of its median to
the stock RecurrentPPO's median, and the range of the per-round ratios; writes
JSON (every round's figures).

Usage::

    python scripts/bench_rl.py --steps 8192 --repeats 3 --threads 1 --json docs/bench_rl.json
    # our GRU at shorter chunks too (labelled gru@chunk8, ...), on a short-episode task
    python scripts/bench_rl.py --config agents/configs/counting.yaml --variants stock-lstm gru --chunk-lengths 8 16 32
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import platform
import statistics
import time

import torch

from sparsernn.agents import ALGOS, load_config, make_env
from sparsernn.agents.config import CONFIG_DIR, parse_policy_kwargs, parse_ppo_kwargs
from sparsernn.agents.variants import VARIANTS, variant_policy_kwargs
from sparsernn.benchmarking import interleaved_round, write_json

DEFAULT_CONFIG = CONFIG_DIR / "cartpole_novel.yaml"
# Throughput at the final routing budget: SparseRecurrentPPO would anneal a routed policy's keep from
# 1.0 over the first quarter of each learn() call (its default), i.e. time denser steps.
NO_ANNEAL = {"sparse": {"router_anneal": 0.0}}


def chunked_name(name: str, chunk_length: int) -> str:
    """The label of variant ``name`` run with ``chunk_length`` (``--chunk-lengths``)."""
    return f"{name}@chunk{chunk_length}"


def build_variant(name: str, config: dict, warmup: int, seed: int, device: str = "cpu"):
    """The variant's model (on ``device``) and env, after ``warmup`` untimed env steps; and the warm-up's seconds.

    ``name`` is a variant of :data:`VARIANTS` or :func:`chunked_name` of one (its ``chunk_length`` set)."""
    base, _, chunk = name.partition("@chunk")
    variant = VARIANTS[base]
    if chunk:
        variant = replace(variant, ppo_kwargs={**variant.ppo_kwargs, "chunk_length": int(chunk)})
    env = make_env(config["env_id"], config.get("n_envs", 8), seed, None, config.get("normalize", False))
    policy_kwargs = parse_policy_kwargs(variant_policy_kwargs(base, config.get("policy_kwargs", {})))
    model = ALGOS[variant.algo](variant.policy, env, policy_kwargs=policy_kwargs, seed=seed, device=device,
                                **parse_ppo_kwargs({**config.get("ppo_kwargs", {}), **variant.ppo_kwargs,
                                                    **NO_ANNEAL.get(variant.algo, {})}))
    start = time.perf_counter()
    model.learn(warmup)
    return model, env, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (env and PPO settings)")
    parser.add_argument("--steps", type=int, default=8192, help="timed env steps per variant and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all variants (the median is reported)")
    parser.add_argument("--chunk", type=int, default=1024, help="env steps per turn within a round")
    parser.add_argument("--warmup", type=int, default=1024, help="untimed env steps first (compilation)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 leaves torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="torch device of every variant's model (the CPU is faster at RL's small shapes)")
    parser.add_argument("--chunk-lengths", type=int, nargs="+", default=[],
                        help="also run each of our variants (algo 'sparse') with these chunk_length values, "
                             "labelled '<variant>@chunk<L>' (backpropagation truncated at chunk starts)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    bad = [n for n in args.chunk_lengths if n < 1]
    if bad:
        parser.error(f"--chunk-lengths must be >= 1; got {bad}")
    args.variants = args.variants + [chunked_name(name, n) for n in args.chunk_lengths
                                     for name in args.variants if VARIANTS[name].algo == "sparse"]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.steps < 1 or args.repeats < 1 or args.chunk < 1:
        parser.error(f"--steps, --repeats and --chunk must be >= 1; got {args.steps}, {args.repeats} and {args.chunk}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    models = {}
    for name in args.variants:
        models[name] = build_variant(name, config, args.warmup, args.seed, args.device)
        print(f"{name:>24s}: built, warm-up {models[name][2]:.1f} s", flush=True)
    rounds: dict[str, list[float]] = {name: [] for name in args.variants}
    for round_ in range(args.repeats):
        speeds = interleaved_round({name: model for name, (model, _, _) in models.items()}, args.steps, args.chunk)
        for name in args.variants:
            rounds[name].append(speeds[name])
            print(f"round {round_ + 1}/{args.repeats} {name:>24s}: {rounds[name][-1]:8.1f} env-steps/s", flush=True)
    for _, env, _ in models.values():
        env.close()
    stock = rounds.get("stock-lstm")
    results = []
    print(f"\n{'variant':>24s} {'env-steps/s':>12s} {'x stock':>8s} {'range':>13s}")
    for name in args.variants:
        variant = VARIANTS[name.partition("@chunk")[0]]
        median = statistics.median(rounds[name])
        result = {"variant": name, "algo": variant.algo, "policy": variant.policy,
                  "extra": {k: str(v) for k, v in variant.policy_kwargs.items()},
                  "chunk_length": int(name.partition("@chunk")[2] or 0) or None,
                  "steps": args.steps, "rounds_steps_per_s": rounds[name], "steps_per_s": median,
                  "warmup_s": models[name][2], "ratio_to_stock": None, "round_ratios": None}
        line = f"{name:>24s} {median:12.1f}"
        if stock:
            result["ratio_to_stock"] = median / statistics.median(stock)
            result["round_ratios"] = [ours / theirs for ours, theirs in zip(rounds[name], stock)]
            line += f" {result['ratio_to_stock']:8.2f} {min(result['round_ratios']):6.2f}-{max(result['round_ratios']):.2f}"
        print(line)
        results.append(result)
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                "processor": platform.processor(), "config": args.config, "steps": args.steps,
                "repeats": args.repeats, "chunk": args.chunk, "warmup": args.warmup, "device": args.device,
                "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
        write_json(args.json, {"meta": meta, "results": results})


if __name__ == "__main__":
    main()
