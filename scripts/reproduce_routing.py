"""The DS-RNN paper's further claims, measured with the toolkit's routed layer (issue 12, item 3).

Writes ``routing.json`` and ``routing.png`` to ``--out`` (default ``docs/results/issue12``):

(a) **Retention**: the routed GRU's accuracy relative to the dense GRU's at hidden keep 0.5, 0.25
    and 0.1 on the multi-task problem below (mean over ``--seeds``). The RL retention table (mean
    return over the dense GRU's, per env) is ``scripts/retention_table.py`` on the JSON lines of
    ``scripts/rl_quality.py`` (``docs/rl.md``).
(b) **Specialisation**: which hidden channels each task keeps. Per task, the share of steps each
    channel is kept; the overlap of the tasks' most-used channels (Jaccard of the top ``keep * H``);
    and how well a nearest-centroid classifier names the hidden task from one held-out sequence's
    channel usage (chance 1/3).
(c) **Equal budget**: at the same number of trainable weights, a routed GRU against a GRU with
    static block sparsity (and the dense GRU of that size), all three at the same step cost
    budget where they can be.

The multi-task problem: three memory tasks that share one input and output format. The task is
not given; the model must infer it, since each task draws its symbols from its own group of four
input channels (plus four noise channels shared by all):

- ``repeat``: answer the symbol seen one step earlier;
- ``count``: answer how many times symbol 0 has been seen so far, mod 4;
- ``recall``: answer the first symbol of the sequence.

Usage::

    python scripts/reproduce_routing.py          # about 12 minutes on one (shared) CPU core
    python scripts/reproduce_routing.py --seeds 0 --updates 100   # a quick look
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsernn.benchmarking import machine_info
from sparsernn.core import SparseRecurrent

TASKS = ("repeat", "count", "recall")
SYMBOLS = 4
NOISE = 4
INPUT_SIZE = len(TASKS) * SYMBOLS + NOISE


def make_batch(task: int, batch: int, steps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (T, B, INPUT_SIZE)`` and targets ``y (T, B)`` of one task."""
    symbols = torch.randint(0, SYMBOLS, (steps, batch), generator=gen)
    x = torch.zeros(steps, batch, INPUT_SIZE)
    x.scatter_(2, (task * SYMBOLS + symbols).unsqueeze(2), 1.0)
    x[..., -NOISE:] = torch.randn(steps, batch, NOISE, generator=gen)
    if TASKS[task] == "repeat":
        y = torch.cat([symbols[:1], symbols[:-1]])
    elif TASKS[task] == "count":
        y = (symbols == 0).long().cumsum(0) % SYMBOLS
    else:
        y = symbols[:1].expand(steps, batch)
    return x, y


def mixed_batch(batch: int, steps: int, gen: torch.Generator):
    """A batch with every task, in equal shares, columns shuffled; also each column's task."""
    per = batch // len(TASKS)
    parts = [make_batch(task, per, steps, gen) for task in range(len(TASKS))]
    x = torch.cat([p[0] for p in parts], 1)
    y = torch.cat([p[1] for p in parts], 1)
    tasks = torch.arange(len(TASKS)).repeat_interleave(per)
    order = torch.randperm(x.shape[1], generator=gen)
    return x[:, order], y[:, order], tasks[order]


class Model(nn.Module):
    """A recurrent layer and a linear read-out of the symbol at every step."""

    def __init__(self, layer: SparseRecurrent):
        super().__init__()
        self.layer = layer
        self.readout = nn.Linear(layer.hidden_size, SYMBOLS)

    def forward(self, x):
        y, _ = self.layer(x)
        return self.readout(y)


def trainable_parameters(model: Model) -> int:
    """Parameters that train: the layer's unmasked weights, its biases, router and read-out."""
    n_ih, n_hh = model.layer.trainable_counts()
    masked = model.layer.weight_ih.numel() + model.layer.weight_hh.numel()
    return sum(p.numel() for p in model.parameters()) - masked + n_ih + n_hh


def train(layer: SparseRecurrent, seed: int, args) -> Model:
    torch.manual_seed(seed)
    model = Model(layer)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(1000 + seed)
    for _ in range(args.updates):
        x, y, _ = mixed_batch(args.batch, args.steps, gen)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits[1:].reshape(-1, SYMBOLS), y[1:].reshape(-1)) + layer.aux_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def accuracy(model: Model, seed: int, args) -> dict[str, float]:
    """Per-task accuracy on fresh sequences (steps after the first)."""
    gen = torch.Generator().manual_seed(2000 + seed)
    out = {}
    for task, name in enumerate(TASKS):
        x, y = make_batch(task, args.eval_batch, args.steps, gen)
        out[name] = float((model(x)[1:].argmax(-1) == y[1:]).float().mean())
    out["mean"] = float(np.mean([out[name] for name in TASKS]))
    return out


def layer_for(hidden: int, keep: float | None, density: float, seed: int) -> SparseRecurrent:
    options = {} if keep is None or keep >= 1.0 else {"router_keep": (1.0, keep)}
    return SparseRecurrent(INPUT_SIZE, hidden, cell="gru", density_hh=density, seed=seed, **options)


def retention(args) -> dict:
    rows = defaultdict(list)
    for seed in args.seeds:
        for keep in [1.0, *args.keeps]:
            model = train(layer_for(args.hidden, keep, 1.0, seed), seed, args)
            rows[keep].append(accuracy(model, seed, args)["mean"])
            print(f"(a) seed {seed} keep {keep:<5g} accuracy {rows[keep][-1]:.3f}", flush=True)
    dense = float(np.mean(rows[1.0]))
    table = [{"keep": keep, "accuracy": float(np.mean(accs)), "per_seed": accs,
              "retention": float(np.mean(accs)) / dense} for keep, accs in rows.items()]
    return {"hidden": args.hidden, "table": table}


def specialisation(args) -> dict:
    """Channel usage per task of the routed layer at the smallest keep, per seed, after training and,
    as the baseline it must beat, at initialisation (an untrained router keeps the channels of
    largest |h|, which already differ between tasks that read different inputs)."""
    keep = min(args.keeps)
    trained = [usage_statistics(train(layer_for(args.hidden, keep, 1.0, seed), seed, args), seed, args)
               for seed in args.seeds]
    initial = [usage_statistics(Model(layer_for(args.hidden, keep, 1.0, seed)), seed, args) for seed in args.seeds]
    for label, results in (("trained", trained), ("at init", initial)):
        for r in results:
            print(f"(b) {label} seed {r['seed']} keep {keep}: Jaccard {r['jaccard_top_k']}, task from usage "
                  f"{r['task_from_usage_accuracy']:.3f} (chance {1 / len(TASKS):.3f})", flush=True)

    def summary(results):
        return {"mean_jaccard": float(np.mean([np.mean(list(r["jaccard_top_k"].values())) for r in results])),
                "mean_task_from_usage_accuracy": float(np.mean([r["task_from_usage_accuracy"] for r in results]))}

    return {"keep": keep, "hidden": args.hidden, "per_seed": trained, "at_init_per_seed": initial,
            **summary(trained), "at_init": summary(initial)}


@torch.no_grad()
def usage_statistics(model: Model, seed: int, args) -> dict:
    """Per task, the share of steps each hidden channel is kept; overlap and task-from-usage accuracy."""
    gen = torch.Generator().manual_seed(3000 + seed)
    usage = []  # per task: (B, H) share of steps each channel is kept, per sequence
    for task in range(len(TASKS)):
        x, _ = make_batch(task, args.eval_batch, args.steps, gen)
        _, kept_hidden = model.layer.kept_channels(x)
        usage.append(kept_hidden.float().mean(0))
    k = model.layer.keep_count_hidden
    top = [set(u.mean(0).topk(k).indices.tolist()) for u in usage]
    jaccard = {f"{TASKS[a]}-{TASKS[b]}": len(top[a] & top[b]) / len(top[a] | top[b])
               for a in range(len(TASKS)) for b in range(a + 1, len(TASKS))}
    # nearest centroid: centroids from the first half of each task's sequences, scored on the rest
    half = args.eval_batch // 2
    centroids = torch.stack([u[:half].mean(0) for u in usage])
    test = torch.cat([u[half:] for u in usage])
    truth = torch.arange(len(TASKS)).repeat_interleave(args.eval_batch - half)
    predicted = torch.cdist(test, centroids).argmin(1)
    return {"seed": seed, "jaccard_top_k": jaccard, "task_from_usage_accuracy": float((predicted == truth).float().mean()),
            "usage_per_task": [u.mean(0).tolist() for u in usage]}


def hidden_for_budget(target: int, keep: float | None, seed: int) -> int:
    """The dense or routed hidden size whose trainable parameters come closest to ``target``."""
    best = min(range(8, 512), key=lambda h: abs(trainable_parameters(Model(layer_for(h, keep, 1.0, seed))) - target))
    return best


def equal_budget(args) -> dict:
    keep = args.budget_keep
    static = lambda seed: layer_for(args.budget_hidden, None, keep, seed)  # noqa: E731
    target = trainable_parameters(Model(static(0)))
    routed_hidden = hidden_for_budget(target, keep, 0)
    dense_hidden = hidden_for_budget(target, None, 0)
    configs = {
        f"static density_hh={keep:g}, H={args.budget_hidden}": static,
        f"routed hidden keep={keep:g}, H={routed_hidden}": lambda seed: layer_for(routed_hidden, keep, 1.0, seed),
        f"dense, H={dense_hidden}": lambda seed: layer_for(dense_hidden, None, 1.0, seed),
    }
    table = []
    for name, make in configs.items():
        accs, params = [], None
        for seed in args.seeds:
            model = train(make(seed), seed, args)
            params = trainable_parameters(model)
            accs.append(accuracy(model, seed, args)["mean"])
        layer = make(0)  # multiply-adds of one step and sample: W_ih, and the hidden channels each reads
        hidden_reads = layer.keep_count_hidden if layer.router is not None else layer.density_hh * layer.hidden_size
        active = 3 * layer.hidden_size * (layer.input_size + hidden_reads)
        table.append({"config": name, "trainable_parameters": params, "accuracy": float(np.mean(accs)),
                      "per_seed": accs, "active_macs_per_step": float(active)})
        print(f"(c) {name}: {params} trainable, accuracy {np.mean(accs):.3f}", flush=True)
    return {"target_parameters": target, "table": table}


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    table = payload["retention"]["table"]
    axes[0].plot([r["keep"] for r in table], [r["retention"] for r in table], "o-")
    axes[0].axhline(0.9, color="grey", ls="--", lw=1)
    axes[0].set(xscale="log", xlabel="hidden keep", ylabel="accuracy / dense accuracy",
                title="(a) retention (multi-task memory)")
    usage = np.array(payload["specialisation"]["per_seed"][0]["usage_per_task"])
    axes[1].imshow(usage, aspect="auto", cmap="viridis")
    axes[1].set(yticks=range(len(TASKS)), yticklabels=TASKS, xlabel="hidden channel",
                title=f"(b) share of steps kept, keep {payload['specialisation']['keep']:g}")
    budget = payload["equal_budget"]["table"]
    axes[2].barh([r["config"] for r in budget], [r["accuracy"] for r in budget])
    axes[2].set(xlabel="accuracy", title=f"(c) {payload['equal_budget']['target_parameters']} trainable parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--batch", type=int, default=63)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--budget-hidden", type=int, default=128)
    parser.add_argument("--budget-keep", type=float, default=0.25)
    parser.add_argument("--out", default="docs/results/issue12")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    payload = {"command": " ".join(["python", "scripts/reproduce_routing.py", *(argv or sys.argv[1:])]),
               "machine": machine_info(), "settings": vars(args)}
    payload["retention"] = retention(args)
    payload["specialisation"] = specialisation(args)
    payload["equal_budget"] = equal_budget(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(payload, indent=1))
    plot(payload, out / "routing.png")
    print(f"wrote {out / 'routing.json'} and {out / 'routing.png'}")
    return payload


if __name__ == "__main__":
    main()
