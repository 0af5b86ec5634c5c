"""Training throughput: stock RecurrentPPO vs SparseRecurrentPolicy variants vs feed-forward PPO.

All variants train on the same env with the same PPO hyperparameters (by
default the RL Zoo's CartPoleNoVel ppo_lstm settings, ``agents/configs/cartpole_novel.yaml``)
in one process, one after another. Each first trains a short warm-up (TorchScript /
torch.compile happen there), then is timed over ``--steps`` env steps.
Prints env-steps/s and the ratio to the stock RecurrentPPO, and writes JSON.

Usage::

    python scripts/bench_rl.py --steps 20000 --threads 1 --json docs/bench_rl.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sparsernn.agents import ALGOS, load_config, make_env
from sparsernn.agents.config import CONFIG_DIR, parse_policy_kwargs, parse_ppo_kwargs

DEFAULT_CONFIG = CONFIG_DIR / "cartpole_novel.yaml"
RECURRENT_KEYS = ("hidden_size", "enable_critic_lstm", "shared_lstm")

# name -> (algo, policy, extra policy kwargs)
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "stock-lstm": ("recurrent", "MlpLstmPolicy", {}),
    "ppo-mlp": ("ppo", "MlpPolicy", {}),
    "lstm": ("sparse", "SparseRecurrentPolicy", {"cell": "lstm"}),
    "gru": ("sparse", "SparseRecurrentPolicy", {"cell": "gru"}),
    "gru-core": ("sparse", "SparseRecurrentPolicy", {"cell": "gru", "kernel": "core"}),
    "gru-d0.1": ("sparse", "SparseRecurrentPolicy", {"cell": "gru", "density_ih": 0.1, "density_hh": 0.1}),
    "gru-router0.1": ("sparse", "SparseRecurrentPolicy", {"cell": "gru", "router_keep": 0.1}),
    "gru-event": ("sparse", "SparseRecurrentPolicy", {"cell": "gru", "update_gate": "event"}),
    "stock-policy-sparse-ppo": ("sparse", "MlpLstmPolicy", {}),
}


def policy_kwargs_for(algo: str, policy: str, base: dict, extra: dict) -> dict:
    kwargs = dict(base)
    hidden = kwargs.pop("hidden_size", 64)
    if algo == "ppo":
        return {k: v for k, v in kwargs.items() if k not in RECURRENT_KEYS}
    if policy == "MlpLstmPolicy":
        return {**kwargs, "lstm_hidden_size": hidden}
    return {**kwargs, "hidden_size": hidden, **extra}


def bench_variant(name: str, config: dict, steps: int, warmup: int, seed: int) -> dict:
    algo, policy, extra = VARIANTS[name]
    env = make_env(config["env_id"], config.get("n_envs", 8), seed, None, config.get("normalize", False))
    policy_kwargs = parse_policy_kwargs(policy_kwargs_for(algo, policy, config.get("policy_kwargs", {}), extra))
    model = ALGOS[algo](policy, env, policy_kwargs=policy_kwargs, seed=seed, device="cpu",
                        **parse_ppo_kwargs(config.get("ppo_kwargs", {})))
    start = time.perf_counter()
    model.learn(warmup)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    elapsed = time.perf_counter() - start
    env.close()
    return {"variant": name, "algo": algo, "policy": policy, "extra": {k: str(v) for k, v in extra.items()},
            "steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed, "warmup_s": warm_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (env and PPO settings)")
    parser.add_argument("--steps", type=int, default=20_000, help="timed env steps per variant")
    parser.add_argument("--warmup", type=int, default=2048, help="untimed env steps first (compilation)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 leaves torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    results = []
    for name in args.variants:
        result = bench_variant(name, config, args.steps, args.warmup, args.seed)
        results.append(result)
        print(f"{name:>24s}: {result['steps_per_s']:8.1f} env-steps/s  (warm-up {result['warmup_s']:.1f} s)",
              flush=True)
    stock = next((r["steps_per_s"] for r in results if r["variant"] == "stock-lstm"), None)
    print(f"\n{'variant':>24s} {'env-steps/s':>12s} {'x stock':>8s}")
    for result in results:
        result["ratio_to_stock"] = result["steps_per_s"] / stock if stock else None
        ratio = f"{result['ratio_to_stock']:8.2f}" if stock else "       -"
        print(f"{result['variant']:>24s} {result['steps_per_s']:12.1f} {ratio}")
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                "processor": platform.processor(), "config": args.config, "steps": args.steps}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
