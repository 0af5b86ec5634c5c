"""Where a gated policy's extra time goes at RL's shapes: the profile behind ``docs/benchmarks_selective_rl.md``.

Builds each variant's ``SparseRecurrentPolicy`` as ``scripts/bench_rl.py`` does (same config: 8 envs,
32-step rollouts, 256-sample minibatches) and times its two kinds of call, one thread:

- ``act``: one acting step, ``policy.forward`` on 8 observations without gradient (a rollout makes 32);
- ``train``: one PPO minibatch, ``evaluate_actions`` on 8 sequences of 32 steps, the loss with the
  policy's ``aux_loss()`` and its backward (an update makes 20).

The variants take turns ``--rounds`` times; each figure is the median over rounds of the median over
``--repeats`` calls of the thread's CPU time (not wall time: the machine may be shared), in
microseconds, and the difference to the first variant. ``--layers`` adds each variant's two
recurrent layers alone (one group call, as the policy makes it) and the gate part alone. ``--time-indices N``
trains each rhythm variant for N env steps and reports how often the envs of a step share one time index
(only then is the rhythm's open set the same for the whole batch). ``--cprofile NAME`` adds
the top functions of that variant's calls by ``cProfile``; ``--torch-profile NAME`` the top operators
by torch's profiler (self CPU time).

Example::

    OMP_NUM_THREADS=1 python scripts/profile_gated.py --variants gru gru-event0.5 gru-rhythm0.5 --layers
    OMP_NUM_THREADS=1 python scripts/profile_gated.py --variants gru gru-rhythm0.5 --torch-profile gru-rhythm0.5
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import torch
from sb3_contrib.common.recurrent.type_aliases import RNNStates

from sparsernn.agents import ALGOS, load_config, make_env
from sparsernn.agents.config import parse_policy_kwargs, parse_ppo_kwargs
from sparsernn.agents.variants import VARIANTS, variant_policy_kwargs
from sparsernn.benchmarking import time_call

CONFIG = "cartpole_novel.yaml"


def cpu_time_call(fn, repeats: int, warmup: int = 1) -> float:
    """Median CPU time of the calling thread per ``fn()`` call, in milliseconds (:func:`time_call`
    by ``time.thread_time``)."""
    return time_call(fn, repeats, warmup, clock=time.thread_time)


def build_model(name: str, config: dict, seed: int = 0):
    """The variant's model (as bench_rl builds it, without training) and its env."""
    variant = VARIANTS[name]
    env = make_env(config["env_id"], config.get("n_envs", 8), seed, None, config.get("normalize", False))
    policy_kwargs = parse_policy_kwargs(variant_policy_kwargs(name, config.get("policy_kwargs", {})))
    model = ALGOS[variant.algo](variant.policy, env, policy_kwargs=policy_kwargs, seed=seed, device="cpu",
                                **parse_ppo_kwargs({**config.get("ppo_kwargs", {}), **variant.ppo_kwargs}))
    return model, env


def build_policy(name: str, config: dict, seed: int = 0):
    """The variant's policy (as bench_rl builds its model, without training) and its env."""
    model, env = build_model(name, config, seed)
    return model.policy, env


def calls(policy, env, steps: int, seed: int = 0):
    """``(act, train)``: closures running one acting step and one training minibatch of ``policy``."""
    gen = torch.Generator().manual_seed(seed)
    n_envs, obs_dim = env.num_envs, env.observation_space.shape[0]
    obs_act = torch.randn(n_envs, obs_dim, generator=gen)
    starts_act = torch.zeros(n_envs)
    states_act = RNNStates(policy.lstm_actor.initial_states(n_envs), policy.lstm_critic.initial_states(n_envs))
    obs = torch.randn(steps * n_envs, obs_dim, generator=gen)
    actions = torch.randint(0, env.action_space.n, (steps * n_envs,), generator=gen).float()
    starts = (torch.rand(steps * n_envs, generator=gen) < 0.02).float()

    def act():
        with torch.no_grad():
            policy.forward(obs_act, states_act, starts_act)

    def train():
        policy.optimizer.zero_grad(set_to_none=True)
        values, log_prob, entropy = policy.evaluate_actions(obs, actions, states_act, starts)
        loss = values.mean() + log_prob.mean() + entropy.mean() + policy.aux_loss()
        loss.backward()

    return act, train


def print_layer_parts(policies: dict, steps: int, repeats: int) -> None:
    """Per variant, its two recurrent layers alone as one group call (``group_forward``) on a
    minibatch's shape (``steps`` x envs) and an acting step's (1 x envs): forward without gradient,
    forward + backward of ``sum(y) + aux_loss()`` and of ``sum(y)`` alone, and the gate part alone (the pre-activations of
    both layers as the fused group computes them inside its node, and their parameters' gradients from a given
    ``da``: ``core/fused_gates.py``), in microseconds of CPU time."""
    from sparsernn.core import group_forward
    from sparsernn.core.fused_gates import gate_inputs, parameter_grads, preactivations

    print(f"\nlayers alone (actor + critic, one group call), CPU time, medians of {repeats} calls (microseconds)")
    print(f"{'variant':>16s} {'T':>3s} {'forward':>8s} {'fwd+bwd':>8s} {'no aux':>8s} {'gate fwd':>9s} {'gate f+b':>9s}")
    for name, (policy, batch) in policies.items():
        layers = list(policy.recurrent_layers.values())
        first = layers[0]
        for T in (1, steps):
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(T, batch, first.input_size, generator=gen)
            starts = (torch.rand(T, batch, generator=gen) < 0.02).float()
            states = [layer.initial_state(batch) for layer in layers]
            if first.update_gate == "rhythm":
                for state in states:
                    state[:, -1] = torch.randint(0, 200, (batch,), generator=gen).float()

            def forward():
                with torch.no_grad():
                    group_forward(layers, x, states, starts)

            def forward_backward(aux: bool = True):
                out = group_forward(layers, x, states, starts)
                loss = sum(y.sum() for y, _ in out)
                if aux:
                    loss = loss + sum(layer.aux_loss() for layer in layers)
                loss.backward()

            def gate_part():
                spec, params = gate_inputs(layers, [state[:, -1] for state in states], starts)
                return spec, params, preactivations(spec, x, params, len(layers))

            def gate_no_grad():
                with torch.no_grad():
                    gate_part()

            def gate_backward():
                with torch.no_grad():
                    spec, params, (gate_x, _, times, _) = gate_part()
                    parameter_grads(spec, torch.ones_like(gate_x), x, torch.zeros_like(gate_x), times, params,
                                    len(layers))

            few = max(1, repeats // 4)
            row = [cpu_time_call(forward, repeats), cpu_time_call(forward_backward, few),
                   cpu_time_call(lambda: forward_backward(aux=False), few)]
            if first.update_gate is not None:
                row += [cpu_time_call(gate_no_grad, repeats), cpu_time_call(gate_backward, few)]
            cells = " ".join(f"{v * 1e3:8.1f}" for v in row[:3]) + "".join(f" {v * 1e3:9.1f}" for v in row[3:])
            print(f"{name:>16s} {T:3d} {cells}")
        for layer in layers:
            layer.zero_grad(set_to_none=True)


def print_time_indices(names: list[str], config: dict, steps: int) -> None:
    """Per rhythm variant, over ``steps`` env steps of training (SparseRecurrentPPO, as bench_rl): the share of
    the fused group's (step, call) rows whose samples all have one time index, and the mean number of distinct
    indices per step, for acting calls (T=1) and minibatches, read where the group computes them."""
    import sparsernn.core.fused_gates as fused_gates

    original = fused_gates.group_time_indices
    for name in names:
        if VARIANTS[name].policy_kwargs.get("update_gate") != "rhythm":
            continue
        counts = {"act": [], "train": []}

        def recording(time0, episode_starts, n_steps):
            times = original(time0, episode_starts, n_steps)
            distinct = [len(torch.unique(row)) for row in times[0]]  # per step, over the batch
            counts["act" if n_steps == 1 else "train"].extend(distinct)
            return times

        model, env = build_model(name, config)
        fused_gates.group_time_indices = recording
        try:
            model.learn(steps)
        finally:
            fused_gates.group_time_indices = original
        env.close()
        for kind, distinct in counts.items():
            shared = sum(d == 1 for d in distinct) / max(len(distinct), 1)
            print(f"{name}: {kind}, {len(distinct)} steps: share with one time index for the batch {shared:.3f}, "
                  f"distinct indices per step {statistics.mean(distinct):.2f} (batch {env.num_envs})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["gru", "gru-event0.5", "gru-rhythm0.5"],
                        choices=[n for n, v in VARIANTS.items() if v.policy == "SparseRecurrentPolicy"])
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=5, help="turns of all variants (median reported)")
    parser.add_argument("--layers", action="store_true",
                        help="also time each variant's actor + critic layers alone (one group call) and its gate part")
    parser.add_argument("--time-indices", type=int, default=0, metavar="STEPS",
                        help="train each rhythm variant this many env steps; report how often a step's envs share a time index")
    parser.add_argument("--cprofile", default=None, help="a variant: print cProfile's top functions of its calls")
    parser.add_argument("--torch-profile", default=None, help="a variant: print torch profiler's top operators")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from sparsernn.agents.config import CONFIG_DIR

    config = load_config(str(CONFIG_DIR / CONFIG))
    steps = config["ppo_kwargs"]["n_steps"]
    funcs, funcs_policies = {}, {}
    for name in args.variants:
        policy, env = build_policy(name, config)
        funcs_policies[name] = (policy, env.num_envs)
        funcs[name] = calls(policy, env, steps)
        for fn in funcs[name]:
            fn()  # warm-up: C++ build / load, first allocations
    times = {name: {"act": [], "train": []} for name in args.variants}
    for _ in range(args.rounds):
        for name in args.variants:
            act, train = funcs[name]
            times[name]["act"].append(cpu_time_call(act, args.repeats) * 1e3)
            times[name]["train"].append(cpu_time_call(train, max(1, args.repeats // 10)) * 1e3)
    first = args.variants[0]
    print(f"one thread, CPU time; medians over {args.rounds} rounds of medians over {args.repeats} acting calls "
          f"/ {max(1, args.repeats // 10)} minibatches (microseconds)")
    print(f"{'variant':>16s} {'act':>9s} {'+':>8s} {'train':>9s} {'+':>8s}  per 256 env steps (32 act + 20 train)")
    base = {kind: statistics.median(times[first][kind]) for kind in ("act", "train")}
    for name in args.variants:
        med = {kind: statistics.median(times[name][kind]) for kind in ("act", "train")}
        per_rollout = 32 * med["act"] + 20 * med["train"]
        print(f"{name:>16s} {med['act']:9.1f} {med['act'] - base['act']:+8.1f} {med['train']:9.1f} "
              f"{med['train'] - base['train']:+8.1f}  {per_rollout / 1e3:8.2f} ms")
    if args.layers:
        print_layer_parts(funcs_policies, steps, args.repeats)
    if args.time_indices:
        print_time_indices(args.variants, config, args.time_indices)
    if args.cprofile:
        act, train = funcs[args.cprofile]
        for label, fn, n in (("act", act, args.repeats), ("train", train, max(1, args.repeats // 10))):
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(n):
                fn()
            profile.disable()
            print(f"\n--- cProfile, {args.cprofile}, {n} {label} calls")
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    if args.torch_profile:
        act, train = funcs[args.torch_profile]
        for label, fn, n in (("act", act, args.repeats), ("train", train, max(1, args.repeats // 10))):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(n):
                    fn()
            print(f"\n--- torch profiler, {args.torch_profile}, {n} {label} calls")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
