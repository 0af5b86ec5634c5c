"""Fingerprint of a short training run: SHA-256 of the policy's parameters after ``--steps`` env steps.

Two commits that compute the same thing print the same fingerprint, so a change meant to keep a
variant's computation (e.g. a new layer option at a default that does nothing) can be checked
without full runs: run this at both commits and compare.

Usage::

    python scripts/train_fingerprint.py --config agents/configs/counting.yaml \\
        --variants gru-event-default gru-rhythm-default --steps 1024 --seed 0
"""
from __future__ import annotations

import argparse
import hashlib

import torch

from sparsernn.agents import load_config, train
from sparsernn.agents.variants import VARIANTS, variant_policy_kwargs


def fingerprint(config: dict, variant: str, steps: int, seed: int) -> str:
    """The SHA-256 (first 16 hex digits) of every policy parameter and buffer after training."""
    kwargs = {**config, "algo": VARIANTS[variant].algo, "policy": VARIANTS[variant].policy,
              "policy_kwargs": variant_policy_kwargs(variant, config.get("policy_kwargs", {})), "seed": seed,
              "ppo_kwargs": {**config.get("ppo_kwargs", {}), **VARIANTS[variant].ppo_kwargs},
              "total_timesteps": steps, "eval_episodes": 0}
    state = train(**kwargs).model.policy.state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="agents/configs/counting.yaml")
    parser.add_argument("--variants", nargs="+", required=True, choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    for variant in args.variants:
        print(variant, fingerprint(config, variant, args.steps, args.seed), flush=True)


if __name__ == "__main__":
    main()
