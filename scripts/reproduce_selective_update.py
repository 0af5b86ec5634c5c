"""The suRNN paper's long-memory claims, measured with the toolkit's selective-update layer (issue 13, item 2).

Three parts, each writing ``<part>.json`` and ``<part>.png`` to ``--out`` (default ``docs/results/issue13``):

``gradient`` (the paper's figure 2a): how much gradient reaches a cue across a silent gap. A
    ``SparseRecurrent(4, 64, cell="gru")`` reads a cue ``x_0 ~ N(0, I)`` at ``t = 0`` and then ``d``
    zero inputs; ``L = r . h_d`` for a fixed random read-out ``r`` (unit norm). Reported: ``||dL/dx_0||``
    per sample (mean over a batch of 8, then over ``--seeds``), for the dense GRU and the gated layers,
    in float64 (so a vanishing gradient shows as a number, not as a float32 zero).
``trace``: the share of open neurons at each step of one episode of a cue-memory task (cue, silence,
    query) -- from a trained ``SparseRecurrentPPO`` model (``--model``; its actor layer) or, without one,
    a fresh event-gated layer. Every step is one call, so the layer's ``statistics()["update_rate"]``
    is that step's open share.
``memory``: the peak resident memory (``ru_maxrss``) of one rollout and one PPO update of the config at
    rollout columns of ``--memory-steps`` steps (each in a fresh process; one minibatch holds all
    ``--memory-envs`` columns, so backpropagation runs through whole columns).
``success``: success rate (deterministic evaluation) against the gap for each variant, read from the
    JSON lines that ``scripts/rl_quality.py`` writes (``--results``); ``--run`` first trains the runs
    that are missing from them (``--gaps``, ``--variants``, ``--seeds``, ``--steps``) with
    ``agents/configs/cue_memory_long.yaml``'s settings at each gap.

Usage::

    python scripts/reproduce_selective_update.py gradient              # about a minute on one core
    python scripts/reproduce_selective_update.py trace --model runs/issue13/<run>/model.zip
    python scripts/reproduce_selective_update.py success               # re-plot recorded results (gap 5000: the copy task)
    python scripts/reproduce_selective_update.py memory --variants gru-event-r0.3 gru   # peak RSS vs n_steps
"""
from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from sparsernn.benchmarking import machine_info
from sparsernn.core import SparseRecurrent

#: Layers of the gradient part: name -> SparseRecurrent options beside (I=4, H=64, cell="gru").
GRADIENT_LAYERS: dict[str, dict] = {
    "gru (dense)": {},
    "event, initial rate 0.3": {"update_gate": "event", "initial_update_rate": 0.3},
    "event, initial rate 0.1": {"update_gate": "event", "initial_update_rate": 0.1},
    "rhythm, initial rate 0.1": {"update_gate": "rhythm", "initial_update_rate": 0.1},
    "rhythm, initial rate 0.5": {"update_gate": "rhythm", "initial_update_rate": 0.5},
}
DELAYS = (10, 50, 200, 1000, 5000)
DEFAULT_RESULTS = ("docs/results/issue13/cue_memory.jsonl", "docs/results/issue13/copy_recall.jsonl",
                   "docs/rl_quality_memory.jsonl", "docs/results/issue13/copy_recall_gap200_8m.jsonl",
                   "docs/results/issue13/copy_recall_gap200_8m_s2.jsonl",
                   "docs/results/issue13/copy_recall_gap200_12m_s2.jsonl",  # seed 2 trained on: the last row counts
                   "docs/results/issue13/copy_recall_gap200_controls.jsonl",
                   "docs/results/issue13/copy_recall_gap200_controls_8m.jsonl",  # the dense GRU trained on
                   "docs/results/issue13/copy_recall_gap200_stock_2m.jsonl",  # the stock LSTM trained on,
                   "docs/results/issue13/copy_recall_gap200_stock_3m.jsonl",  # 1 M steps at a time
                   "docs/results/issue13/copy_recall_gap200_stock_4m.jsonl")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cue_gradient_norms(options: dict, delay: int, seed: int, batch: int = 8, input_size: int = 4,
                       hidden_size: int = 64) -> tuple[list[float], float]:
    """Per-sample ``||dL/dx_0||`` for ``L = r . h_delay`` (float64), and the layer's realised update rate."""
    layer = SparseRecurrent(input_size, hidden_size, cell="gru", seed=seed, dtype=torch.float64,
                            backend="reference", **options)
    gen = torch.Generator().manual_seed(seed + 10_000)
    readout = torch.randn(hidden_size, generator=gen, dtype=torch.float64)
    readout /= readout.norm()
    cue = torch.randn(1, batch, input_size, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.cat([cue, torch.zeros(delay, batch, input_size, dtype=torch.float64)])
    y, _ = layer(x)
    (y[-1] @ readout).sum().backward()
    return cue.grad[0].norm(dim=1).tolist(), float(layer.statistics()["update_rate"])


def gradient_part(args: argparse.Namespace) -> dict:
    rows = []
    for name, options in GRADIENT_LAYERS.items():
        for delay in args.delays:
            norms, rates = [], []
            for seed in args.seeds:
                per_sample, rate = cue_gradient_norms(options, delay, seed)
                norms.append(float(np.mean(per_sample)))
                rates.append(rate)
            rows.append({"layer": name, "options": options, "delay": delay, "seeds": list(args.seeds),
                         "grad_norm_per_seed": norms, "grad_norm_mean": float(np.mean(norms)),
                         "update_rate_mean": float(np.mean(rates))})
            print(f"{name:>26s} d={delay:5d} ||dL/dx0|| = {np.mean(norms):.3e} "
                  f"(seeds {' '.join(f'{n:.2e}' for n in norms)}), update rate {np.mean(rates):.3f}", flush=True)
    return {"rows": rows}


def plot_gradient(payload: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    by_layer = defaultdict(list)
    for row in payload["rows"]:
        by_layer[row["layer"]].append(row)
    floor = 1e-300
    for index, (name, rows) in enumerate(by_layer.items()):
        ax.plot([r["delay"] for r in rows], [max(r["grad_norm_mean"], floor) for r in rows], label=name,
                marker="os^vD"[index % 5], ls=("-", "--", ":")[index % 3], ms=9 - 1.5 * index)
    ax.set(xscale="log", yscale="log", xlabel="delay d (silent steps after the cue)",
           ylabel="||dL/dx_0|| (mean over seeds)", title="Gradient reaching the cue (float64; 0 drawn at 1e-300)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def episode_observations(gap: int, cue: int, n_cues: int = 4) -> np.ndarray:
    """The observations of one ``CueMemoryEnv`` episode without noise: cue, ``gap`` zeros, query."""
    obs = np.zeros((gap + 2, n_cues + 2), dtype=np.float32)
    obs[0, cue], obs[0, n_cues] = 1.0, 1.0
    obs[gap + 1, n_cues + 1] = 1.0
    return obs


def trace_part(args: argparse.Namespace) -> dict:
    traces = {}
    if args.model:
        from sparsernn.agents import load_model

        model = load_model(args.model)
        layer = model.policy.lstm_actor.layer
        source = f"actor layer of {args.model}"
    else:
        layer = SparseRecurrent(6, 64, cell="gru", update_gate="event", initial_update_rate=0.3, seed=0)
        model, source = None, "fresh SparseRecurrent(6, 64, gru, event, initial_update_rate=0.3, seed=0)"
    for cue in range(4):
        obs = episode_observations(args.gap, cue)
        rates, actions = [], []
        if model is not None:
            state, start = None, np.ones(1, dtype=bool)
            for t in range(len(obs)):
                action, state = model.predict(obs[t:t + 1], state=state, episode_start=start, deterministic=True)
                start = np.zeros(1, dtype=bool)
                rates.append(float(layer.statistics()["update_rate"]))
                actions.append(int(action[0]))
        else:
            state = None
            with torch.no_grad():
                for t in range(len(obs)):
                    _, state = layer(torch.from_numpy(obs[t:t + 1, None]), state)
                    rates.append(float(layer.statistics()["update_rate"]))
        traces[str(cue)] = {"update_rate": rates, "answer": actions[-1] if actions else None}
        silent = rates[1:-1]
        print(f"cue {cue}: open share at the cue {rates[0]:.3f}, in the silence mean {np.mean(silent):.4f} "
              f"max {np.max(silent):.3f}, at the query {rates[-1]:.3f}"
              + (f"; answer {actions[-1]}" if actions else ""), flush=True)
    return {"source": source, "gap": args.gap, "traces": traces}


def plot_trace(payload: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for cue, trace in payload["traces"].items():
        ax.plot(trace["update_rate"], lw=1, label=f"cue {cue}")
    ax.set(xlabel="step of the episode (0: cue; last: query)", ylabel="share of neurons open",
           title=f"Update rate over one episode (gap {payload['gap']})")
    ax.text(0.01, 0.97, payload["source"], transform=ax.transAxes, fontsize=7, va="top")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


REGISTERED_GAPS = {"sparsernn/CueMemory-v0": 50, "sparsernn/CueMemoryLong-v0": 1000, "sparsernn/CopyRecallLong-v0": 5000}


def taught_gap(row: dict) -> int:
    """The gap an ``rl_quality`` row trained at: its ``env_kwargs`` gap, else the registered id's."""
    gap = (row.get("env_kwargs") or {}).get("gap")
    return int(gap) if gap is not None else REGISTERED_GAPS.get(row["env_id"], -1)


def gap_of(row: dict) -> int:
    """The gap an ``rl_quality`` row's success was measured at: its ``eval_env_kwargs`` gap where it has
    one (a policy taught at a shorter gap), else the gap it trained at."""
    gap = (row.get("eval_env_kwargs") or {}).get("gap")
    return int(gap) if gap is not None else taught_gap(row)


def series_of(row: dict) -> str:
    """The row's variant, and ``" (taught at gap G)"`` where it was evaluated at another gap."""
    taught = taught_gap(row)
    return row["variant"] if taught == gap_of(row) else f"{row['variant']} (taught at gap {taught})"


def success_table(paths: list[Path]) -> dict:
    """``{series: {gap: [success per seed]}}`` from JSON lines (a repeated run counts once, the last);
    a series is a variant, or a variant taught at one gap and evaluated at another (:func:`series_of`)."""
    latest = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["env_id"], gap_of(row), series_of(row), row["seed"])] = row
    table: dict = defaultdict(lambda: defaultdict(list))
    for (_env, gap, series, _seed), row in sorted(latest.items(), key=lambda item: item[0][1:]):
        table[series][gap].append({"seed": row["seed"], "success": row["success_rate"], "steps": row["steps"],
                                   "seconds": row["seconds"]})
    return {series: {str(gap): runs for gap, runs in gaps.items()} for series, gaps in table.items()}


def success_part(args: argparse.Namespace) -> dict:
    paths = [Path(p) for p in args.results]
    if args.run:
        import rl_quality  # scripts/ is on sys.path when this file runs as a script

        from sparsernn.agents import load_config

        import gymnasium as gym

        import sparsernn.envs  # noqa: F401  (registers the ids)

        base = load_config(args.config)
        registered = gym.spec(base["env_id"]).kwargs.get("gap")
        for gap in args.gaps:  # the config's env at each gap (its registered gap without env_kwargs)
            config = {**base, "env_kwargs": {} if gap == registered else {"gap": gap}}
            rl_quality.sweep(config, args.variants, args.seeds, args.steps, args.eval_episodes, paths[0])
    table = success_table([p for p in paths if p.exists()])
    for variant, gaps in table.items():
        for gap, runs in gaps.items():
            per_seed = " ".join(f"{r['success']:.2f}" for r in runs)
            print(f"{variant:>16s} gap {gap:>5s}: success {per_seed} (steps {runs[0]['steps']})")
    return {"results": [str(p) for p in paths], "success": table}


#: Lines of the success plot: variants of one model family share a line (the JSON keeps the variant names).
FAMILIES = {"gru-event": "suGRU (event gate)", "gru-event-r0.3": "suGRU (event gate)", "gru": "GRU",
            "stock-lstm": "stock LSTM (sb3-contrib)"}


def plot_success(payload: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lines: dict = defaultdict(dict)
    for variant, gaps in payload["success"].items():
        for gap, runs in gaps.items():
            base, taught = variant.partition(" (taught")[::2]
            name = FAMILIES.get(base, base) + (f" (taught{taught}" if taught else "")
            lines[name].setdefault(int(gap), []).extend(r["success"] for r in runs)
    for name, gaps in lines.items():
        xs = sorted(gaps)
        ax.plot(xs, [np.mean(gaps[g]) for g in xs], marker="o", label=name)
        for g in xs:
            ax.scatter([g] * len(gaps[g]), gaps[g], s=10, alpha=0.4, color=ax.lines[-1].get_color())
    ax.axhline(0.25, color="grey", ls=":", label="chance (4 cues; gap 5000 is the copy task: 1/16)")
    ax.set(xscale="log", xlabel="gap (silent steps between cue and query)", ylabel="success (deterministic eval)",
           ylim=(-0.02, 1.02), title="Recall after a silent gap (mean over seeds; dots: seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def memory_one(variant: str, n_steps: int, n_envs: int, config_path: str) -> dict:
    """Peak resident memory of one rollout + PPO update at ``n_steps`` (this process's high-water mark)."""
    import resource
    import time

    from sparsernn.agents import ALGOS, load_config
    from sparsernn.agents.config import parse_policy_kwargs, parse_ppo_kwargs
    from sparsernn.agents.training import make_env
    from sparsernn.agents.variants import VARIANTS, variant_policy_kwargs

    config = load_config(config_path)
    env = make_env(config["env_id"], n_envs, 0)
    ppo = {**config["ppo_kwargs"], "n_steps": n_steps, "batch_size": n_steps * n_envs, **VARIANTS[variant].ppo_kwargs}
    model = ALGOS[VARIANTS[variant].algo](VARIANTS[variant].policy, env, seed=0, **parse_ppo_kwargs(ppo),
                                          policy_kwargs=parse_policy_kwargs(
                                              variant_policy_kwargs(variant, config["policy_kwargs"])))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model.learn(n_steps * n_envs)  # one rollout and one update (n_epochs passes over one minibatch of all columns)
    return {"variant": variant, "n_steps": n_steps, "n_envs": n_envs, "rss_before_mb": before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - start}


def memory_part(args: argparse.Namespace) -> dict:
    import sys

    rows = []
    for variant in args.variants:
        for n_steps in args.memory_steps:
            done = subprocess.run([sys.executable, __file__, "memory-one", "--variants", variant, "--memory-steps",
                                   str(n_steps), "--memory-envs", str(args.memory_envs), "--config", args.config],
                                  capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{variant:>16s} n_steps {n_steps:6d} x {row['n_envs']} envs: peak RSS {row['peak_rss_mb']:.0f} MB "
                  f"(after building {row['rss_before_mb']:.0f} MB), {row['seconds']:.1f} s", flush=True)
    return {"config": args.config, "rows": rows}


def plot_memory(payload: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    by_variant = defaultdict(list)
    for row in payload["rows"]:
        by_variant[row["variant"]].append(row)
    for variant, rows in by_variant.items():
        ax.plot([r["n_steps"] for r in rows], [r["peak_rss_mb"] - r["rss_before_mb"] for r in rows], marker="o",
                label=variant)
    ax.set(xlabel="rollout column (n_steps; one minibatch of all columns)",
           ylabel="peak RSS added by one rollout + update (MB)", title="Memory of backpropagation through a column")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PARTS = {"gradient": (gradient_part, plot_gradient), "trace": (trace_part, plot_trace),
         "success": (success_part, plot_success), "memory": (memory_part, plot_memory)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=[*PARTS, "memory-one"])
    parser.add_argument("--out", default="docs/results/issue13")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--delays", nargs="+", type=int, default=list(DELAYS), help="gradient: gap lengths")
    parser.add_argument("--model", default=None, help="trace: a saved SparseRecurrentPPO model.zip")
    parser.add_argument("--gap", type=int, default=1000, help="trace: the episode's gap")
    parser.add_argument("--results", nargs="+", default=list(DEFAULT_RESULTS), help="success: rl_quality JSONL")
    parser.add_argument("--run", action="store_true", help="success: train the missing runs first")
    parser.add_argument("--config", default="agents/configs/cue_memory_long.yaml")
    parser.add_argument("--gaps", nargs="+", type=int, default=[50, 200, 1000])
    parser.add_argument("--variants", nargs="+", default=["gru-event-r0.3", "gru", "stock-lstm"])
    parser.add_argument("--steps", type=int, default=None, help="success --run: override total_timesteps")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replot", action="store_true", help="only redraw <part>.png from <part>.json in --out")
    parser.add_argument("--memory-steps", nargs="+", type=int, default=[2048, 4096, 8192, 16384],
                        help="memory: rollout column lengths (one fresh process each)")
    parser.add_argument("--memory-envs", type=int, default=4, help="memory: envs (columns)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.part == "memory-one":
        print(json.dumps(memory_one(args.variants[0], args.memory_steps[0], args.memory_envs, args.config)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    compute, plot = PARTS[args.part]
    if args.replot:
        plot(json.loads((out / f"{args.part}.json").read_text()), out / f"{args.part}.png")
        print(f"wrote {out / (args.part + '.png')}")
        return
    payload = {"part": args.part, "commit": commit(), "machine": machine_info(), **compute(args)}
    (out / f"{args.part}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, out / f"{args.part}.png")
    print(f"wrote {out / (args.part + '.json')} and {out / (args.part + '.png')}")


if __name__ == "__main__":
    main()
