"""Which sequences a trained copy/recall policy gets wrong, and how sure it is (issue 13, item 2).

``sparsernn/CopyRecallLong-v0`` has no randomness but its symbols, so a deterministic policy's
success is a function of the symbol sequence. This script runs a saved model on **every** sequence
(``n_symbols ** length`` of them, 16 for the registered task) in one batched call of the policy --
the observations laid out as :class:`~sparsernn.envs.memory_tasks.CopyRecallEnv` documents them --
and reports, per sequence and recall step, the probability the policy gives the right symbol and its
deterministic answer, and how far apart the actor's hidden states are when the recall starts (whether
the sequences are still told apart). The mean over sequences of "every answer right" is the deterministic policy's
exact expected success (no sampling error).

Writes ``--out`` (JSON) and, beside it, a PNG: for ``length`` 2, one heat map per recall step of
p(right symbol) against (first symbol, second symbol).

Usage::

    python scripts/diagnose_copy_recall.py --model runs/issue13-25m/sparsernn_CopyRecallLong-v0-gru-event-r0.3-s0/model.zip \
        --out docs/results/issue13/copy_recall_failures.json
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from sparsernn.agents.training import load_model


def copy_recall_observations(sequences: np.ndarray, gap: int, n_symbols: int) -> np.ndarray:
    """Observations ``(B, 2 * length + gap, n_symbols + 2)`` of the episodes that show ``sequences`` (B, length)."""
    B, length = sequences.shape
    obs = np.zeros((B, 2 * length + gap, n_symbols + 2), dtype=np.float32)
    for t in range(length):
        obs[np.arange(B), t, sequences[:, t]] = 1.0
        obs[:, t, n_symbols] = 1.0  # write flag
    obs[:, length + gap:, n_symbols + 1] = 1.0  # recall flag
    return obs


@torch.no_grad()
def recall_probabilities(model, sequences: np.ndarray, gap: int, n_symbols: int) -> np.ndarray:
    """The policy's action probabilities ``(B, length, n_symbols)`` at the recall steps of each sequence's episode.

    One call of the actor over whole episodes from a zero state (how an episode starts in training)."""
    policy = model.policy
    policy.set_training_mode(False)
    obs = copy_recall_observations(sequences, gap, n_symbols)
    B, T, D = obs.shape
    shape = (policy.lstm_hidden_state_shape[0], B, policy.lstm_hidden_state_shape[2])
    state = (torch.zeros(shape), torch.zeros(shape))
    starts = torch.zeros(B, T)
    starts[:, 0] = 1.0
    distribution, _ = policy.get_distribution(torch.as_tensor(obs.reshape(B * T, D)), state, starts.reshape(-1))
    probs = distribution.distribution.probs.reshape(B, T, -1)
    return probs[:, T - sequences.shape[1]:].double().numpy()


@torch.no_grad()
def states_before_recall(model, sequences: np.ndarray, gap: int, n_symbols: int) -> np.ndarray:
    """The actor's hidden state ``(B, H)`` after the writes and the gap, just before the first recall step."""
    policy = model.policy
    policy.set_training_mode(False)
    obs = copy_recall_observations(sequences, gap, n_symbols)[:, :sequences.shape[1] + gap]
    B, T, D = obs.shape
    shape = (policy.lstm_hidden_state_shape[0], B, policy.lstm_hidden_state_shape[2])
    starts = torch.zeros(B, T)
    starts[:, 0] = 1.0
    _, (h, _) = policy.get_distribution(torch.as_tensor(obs.reshape(B * T, D)),
                                        (torch.zeros(shape), torch.zeros(shape)), starts.reshape(-1))
    return h[-1].double().numpy()


def diagnose(model_path: str, gap: int, length: int, n_symbols: int) -> dict:
    model = load_model(model_path, "sparse", "cpu")
    sequences = np.array(list(itertools.product(range(n_symbols), repeat=length)), dtype=np.int64)
    probs = recall_probabilities(model, sequences, gap, n_symbols)
    answers = probs.argmax(-1)
    right = answers == sequences
    rows = [{"sequence": seq.tolist(), "answers": ans.tolist(),
             "p_right": [float(p[j, s]) for j, s in enumerate(seq)], "success": bool(ok.all())}
            for seq, ans, p, ok in zip(sequences, answers, probs, right)]
    states = states_before_recall(model, sequences, gap, n_symbols)
    distance = np.linalg.norm(states[:, None] - states[None], axis=-1)
    i, j = np.triu_indices(len(sequences), 1)
    closest = int(np.argmin(distance[i, j]))
    return {"model": model_path, "gap": gap, "length": length, "n_symbols": n_symbols,
            "expected_success": float(right.all(1).mean()), "expected_return": float(right.mean()),
            # how far apart the actor's states are when the recall starts (Euclidean, over pairs of sequences)
            "state_distance": {"min": float(distance[i, j].min()), "max": float(distance[i, j].max()),
                               "closest": [sequences[i[closest]].tolist(), sequences[j[closest]].tolist()]},
            "failed": [r for r in rows if not r["success"]], "sequences": rows}


def plot(payload: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n, length = payload["n_symbols"], payload["length"]
    if length != 2:
        return
    grid = np.zeros((length, n, n))
    for row in payload["sequences"]:
        a, b = row["sequence"]
        grid[:, a, b] = row["p_right"]
    fig, axes = plt.subplots(1, length, figsize=(4 * length, 3.6), constrained_layout=True)
    for j, ax in enumerate(axes):
        image = ax.imshow(grid[j], vmin=0, vmax=1, cmap="viridis")
        ax.set(title=f"recall step {j + 1}: p(symbol {j + 1} right)", xlabel="second symbol", ylabel="first symbol",
               xticks=range(n), yticks=range(n))
        for a in range(n):
            for b in range(n):
                ax.text(b, a, f"{grid[j, a, b]:.2f}", ha="center", va="center",
                        color="white" if grid[j, a, b] < 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(f"copy/recall, gap {payload['gap']}: expected success {payload['expected_success']:.3f}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model.zip saved by sparsernn.agents.train")
    parser.add_argument("--gap", type=int, default=5000, help="silent steps (the env's gap; default 5000)")
    parser.add_argument("--length", type=int, default=2, help="symbols per sequence (default 2)")
    parser.add_argument("--n-symbols", type=int, default=4, help="symbol classes (default 4)")
    parser.add_argument("--out", required=True, help="JSON file to write; the PNG goes beside it")
    args = parser.parse_args(argv)
    for name in ("gap", "length", "n_symbols"):
        value = getattr(args, name)
        if value < (0 if name == "gap" else 1) or (name == "n_symbols" and value < 2):
            parser.error(f"--{name.replace('_', '-')} is out of range: {value}")
    torch.set_num_threads(1)
    payload = diagnose(args.model, args.gap, args.length, args.n_symbols)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, out.with_suffix(".png"))
    print(f"expected success {payload['expected_success']:.4f}, expected return {payload['expected_return']:.4f}")
    d = payload["state_distance"]
    print(f"actor states before the recall: pairwise distance {d['min']:.3f} (closest {d['closest']}) to {d['max']:.3f}")
    for row in payload["failed"]:
        print(f"  {row['sequence']} answered {row['answers']}, p(right) {[round(p, 4) for p in row['p_right']]}")


if __name__ == "__main__":
    main()
