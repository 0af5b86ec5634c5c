"""Where an env step's time goes in ``learn()``: a recurrent policy against feed-forward PPO (issue 15, item 2).

Builds each variant as ``scripts/bench_rl.py`` does (default: the RL Zoo's CartPoleNoVel settings: 8 envs,
32-step rollouts, 256-sample minibatches, 20 epochs), warms it up, then runs ``learn()`` for ``--steps``
env steps ``--rounds`` times, the variants taking turns, with each part of the loop wrapped by a timer of
the thread's CPU time (not wall time: the machine may be shared):

- rollout: ``collect_rollouts`` in all, of which ``policy.forward`` (acting), the env's ``step`` and the
  rollout buffer's ``add``;
- update: ``train`` in all, of which ``policy.evaluate_actions`` (the forward of a minibatch), the
  backward (``Tensor.backward``), gradient clipping (``clip_grad_norm_``) and ``optimizer.step``;
  the rest of ``train`` (minibatch assembly, the loss, logging) is ``update other``.

Prints milliseconds per 1000 env steps per part (median over rounds), each variant's CPU-time env-steps/s
and its ratio to the first variant's, and the gap each part makes. ``--layers`` adds the recurrent
variant's two layers alone at one minibatch's shape (forward + backward, one group call, as the policy
makes it), their multiply-adds, and the ratio the variant would reach if its layers cost nothing — the
ceiling that no faster kernel can pass.

Example::

    OMP_NUM_THREADS=1 python scripts/profile_rl.py --variants ppo-mlp gru --steps 8192 --rounds 3 --layers
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections import defaultdict

import torch

from bench_rl import DEFAULT_CONFIG, build_variant
from sparsernn.agents import load_config
from sparsernn.agents.variants import VARIANTS

PARTS = ("rollout", "act", "env step", "buffer add", "rollout other", "update", "evaluate", "backward", "clip",
         "optimizer", "update other")


class PartTimer:
    """Accumulates the thread's CPU time of wrapped calls by part name; nested parts are not subtracted."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.thread_time() - start
        return timed


@contextlib.contextmanager
def instrumented(model, timer: PartTimer):
    """Wrap the model's loop parts with ``timer`` for the duration of the block (restored after)."""
    saved = []

    def patch(owner, name, part):
        original = getattr(owner, name)
        saved.append((owner, name, original, name in vars(owner)))
        setattr(owner, name, timer.wrap(part, original))

    patch(model, "collect_rollouts", "rollout")
    patch(model, "train", "update")
    patch(model.policy, "forward", "act")
    patch(model.policy, "evaluate_actions", "evaluate")
    patch(model.env, "step", "env step")
    patch(model.rollout_buffer, "add", "buffer add")
    patch(model.policy.optimizer, "step", "optimizer")
    patch(torch.nn.utils, "clip_grad_norm_", "clip")
    patch(torch.Tensor, "backward", "backward")
    try:
        yield
    finally:
        for owner, name, original, own in reversed(saved):
            if own or isinstance(owner, type) or owner is torch.nn.utils:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def profile_round(model, steps: int) -> dict[str, float]:
    """Seconds of CPU time per part over ``learn(steps)``; ``act`` counts only calls made while collecting."""
    timer = PartTimer()
    with instrumented(model, timer):
        start = time.thread_time()
        model.learn(steps, reset_num_timesteps=False)
        total = time.thread_time() - start
    parts = dict(timer.seconds)
    # evaluate_actions runs only in train; forward only when acting (SB3 calls it in collect_rollouts)
    parts["rollout other"] = parts.get("rollout", 0.0) - sum(parts.get(p, 0.0) for p in ("act", "env step", "buffer add"))
    parts["update other"] = parts.get("update", 0.0) - sum(parts.get(p, 0.0) for p in
                                                          ("evaluate", "backward", "clip", "optimizer"))
    parts["total"] = total
    return parts


def layers_alone(model, repeats: int) -> dict[str, float]:
    """The policy's recurrent layers alone at one minibatch's shape: fwd+bwd CPU ms and multiply-adds."""
    from sparsernn.core import group_forward

    layers = list(model.policy.recurrent_layers.values())
    first = layers[0]
    T, B = model.rollout_buffer.chunk_length, model.batch_size // model.rollout_buffer.chunk_length
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, first.input_size, generator=gen)
    starts = (torch.rand(T, B, generator=gen) < 0.02).float()
    states = [layer.initial_state(B) for layer in layers]

    def call():
        out = group_forward(layers, x, states, starts)
        sum(y.sum() for y, _ in out).backward()

    times = []
    for _ in range(repeats + 2):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    gates = {"gru": 3, "lstm": 4, "elman": 1}[first.cell]
    n_ih, n_hh = first.trainable_counts()
    forward_macs = len(layers) * T * B * (n_ih + n_hh)  # the products (masked weights count as computed here)
    dense_macs = len(layers) * T * B * gates * first.hidden_size * (first.input_size + first.hidden_size)
    return {"fwd_bwd_ms": statistics.median(times[2:]) * 1e3, "T": T, "B": B,
            "forward_macs_trainable": forward_macs, "forward_macs_dense": dense_macs,
            # backward: the input and state gradients and the weight gradients, two more products of the same size
            "fwd_bwd_macs_dense": 3 * dense_macs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--variants", nargs="+", default=["ppo-mlp", "gru"], choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1024)
    parser.add_argument("--layers", action="store_true", help="time the recurrent layers alone too")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    models = {name: build_variant(name, config, args.warmup, 0)[0] for name in args.variants}
    rounds: dict[str, list[dict]] = {name: [] for name in args.variants}
    for _ in range(args.rounds):
        for name, model in models.items():
            rounds[name].append(profile_round(model, args.steps))
    per_k = {name: {part: statistics.median(r[part] for r in rs) / args.steps * 1e6
                    for part in (*PARTS, "total") if all(part in r for r in rs)}
             for name, rs in rounds.items()}
    base = args.variants[0]
    print(f"CPU time per 1000 env steps (ms), median of {args.rounds} rounds of {args.steps} steps, one thread")
    print(f"{'part':>14s} " + " ".join(f"{n:>10s}" for n in args.variants)
          + "".join(f" {n + ' - ' + base:>16s}" for n in args.variants[1:]))
    for part in (*PARTS, "total"):
        row = [per_k[n].get(part, 0.0) for n in args.variants]
        print(f"{part:>14s} " + " ".join(f"{v:10.1f}" for v in row)
              + "".join(f" {v - row[0]:+16.1f}" for v in row[1:]))
    speeds = {n: 1e6 / per_k[n]["total"] for n in args.variants}
    print("env-steps/s of CPU time: " + ", ".join(f"{n} {speeds[n]:.0f} ({speeds[n] / speeds[base]:.2f}x {base})"
                                                  for n in args.variants))
    report = {"settings": vars(args), "ms_per_1000_steps": per_k, "steps_per_cpu_s": speeds, "rounds": rounds}
    if args.layers:
        for name in args.variants[1:]:
            policy = models[name].policy
            if not hasattr(policy, "recurrent_layers"):
                continue
            alone = layers_alone(models[name], 20)
            updates_per_k = 1000 / models[name].n_envs / models[name].n_steps  # rollouts per 1000 steps
            minibatches = updates_per_k * models[name].n_epochs * (models[name].n_steps * models[name].n_envs
                                                                    // models[name].batch_size)
            layer_ms = alone["fwd_bwd_ms"] * minibatches
            without = per_k[name]["total"] - layer_ms
            gflops = 2 * alone["fwd_bwd_macs_dense"] / (alone["fwd_bwd_ms"] * 1e-3) / 1e9
            alone.update(ms_per_1000_steps_in_updates=layer_ms, ratio_if_free=per_k[base]["total"] / without,
                         gflops=gflops)
            report.setdefault("layers", {})[name] = alone
            print(f"{name}: its layers alone (fwd+bwd, T={alone['T']} B={alone['B']}, one group call) "
                  f"{alone['fwd_bwd_ms']:.3f} ms per minibatch = {layer_ms:.1f} ms per 1000 steps in updates "
                  f"({2 * alone['fwd_bwd_macs_dense'] / 1e6:.1f} MFLOP dense, {gflops:.1f} GFLOP/s); "
                  f"with layers costing nothing in updates: {alone['ratio_if_free']:.2f}x {base}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
