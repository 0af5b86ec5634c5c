"""A short tour of sparsernn (about two minutes on a laptop CPU).

1. core: a layer specified a priori from a parameter budget and hidden
   proportion, with routed channels and selective update; its statistics.
2. RL: a selective-update sparse GRU policy trained with RecurrentPPO on
   velocity-masked CartPole, then evaluated.
3. Anomaly detection: a selective-update detector fitted on the head of a
   NAB series (../shared/data/nab when present, else a synthetic series),
   then streamed point by point, with NAB's score for that file.

Run: ``make demo`` (or ``python scripts/demo.py [--rl-steps N]``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sparsernn.core import hidden_proportion, solve_layer_spec

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
NAB_FILE = "realKnownCause/machine_temperature_system_failure.csv"


def demo_core() -> None:
    print("== core: a layer from (parameter budget, hidden proportion) ==")
    spec = solve_layer_spec(input_size=16, cell="gru", param_budget=20_000, hidden_proportion=0.5)
    print(f"solved: hidden_size={spec.hidden_size}, density_ih={spec.density_ih:.3f}, "
          f"density_hh={spec.density_hh:.3f}, budget={spec.budget}")
    layer = spec.build(router_keep=0.25, update_gate="rhythm", seed=0)
    x = torch.randn(64, 8, 16)  # (T, B, input_size), time-major
    starts = torch.zeros(64, 8)
    starts[32, :4] = 1  # four sequences restart at t = 32, inside the one call
    y, state = layer(x, episode_starts=starts)
    print(f"y {tuple(y.shape)}, state {tuple(state.shape)}, backend used: {layer.last_backend}")
    print(f"hidden proportion {hidden_proportion(layer):.3f}; statistics of the call:")
    for name, value in layer.statistics().items():
        print(f"  {name:24s} {value:.3f}")


def demo_rl(steps: int) -> None:
    from sparsernn.agents import train

    print(f"\n== RL: selective-update sparse GRU on sparsernn/CartPoleNoVel-v1, {steps} steps ==")
    result = train(
        "sparsernn/CartPoleNoVel-v1", total_timesteps=steps, n_envs=8, seed=0, normalize=True,
        policy_kwargs=dict(cell="gru", hidden_size=64, density_hh=0.5, update_gate="event",
                           activation_fn="relu", ortho_init=False, enable_critic_lstm=True),
        ppo_kwargs=dict(n_steps=32, batch_size=256, gamma=0.98, gae_lambda=0.8, n_epochs=20,
                        learning_rate="lin_1e-3", clip_range="lin_0.2", ent_coef=0.0),
        eval_episodes=5, progress_bar=False)
    ev = result.evaluation
    print(f"mean deterministic return over {len(ev.returns)} episodes: {ev.mean_return:.1f} "
          "(max 500; short runs vary, docs/rl.md has the 100 k-step sweep)")
    stats = result.model.policy.sparsity_statistics() if hasattr(result.model.policy, "sparsity_statistics") else {}
    for name, value in stats.items():
        print(f"  {name:32s} {value:.3f}")


def demo_detector() -> None:
    from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer

    print("\n== anomaly detection: selective-update forecaster, fitted then streamed ==")
    if (NAB_DIR / "data" / NAB_FILE).exists():
        from sparsernn.detectors.nab import load_nab_corpus, score_corpus

        corpus = load_nab_corpus(NAB_DIR, files=[NAB_FILE])
        item = corpus[NAB_FILE]
        series = item.values
        head = item.probationary_length
        print(f"{NAB_FILE}: {len(series)} points, fitted on the first {head} (NAB's probationary period)")
    else:
        corpus = None
        t = np.arange(4000)
        series = pd.Series(np.sin(t / 20) + 0.1 * np.random.default_rng(0).normal(size=t.size),
                           index=pd.date_range("2026-01-01", periods=t.size, freq="5min"))
        series.iloc[3000:3010] += 3.0
        head = 600
        print(f"synthetic series: {len(series)} points with a burst at 3000, fitted on the first {head}")
    detector = SelectiveUpdateDetector(hidden_size=32, update_gate="event", n_steps=150, progress=False, seed=0)
    detector.fit(series.iloc[:head])
    # The whole series is streamed, as NAB does. AnomalyLikelihood (NAB's HTM
    # estimator) turns surprise into a score in [0, 1] and alarms; the fitted
    # rows are its probation (half learning period, half estimation samples).
    stream = AnomalyLikelihood(StreamScorer(detector), learning_period=head // 2, estimation_samples=head - head // 2)
    scores, alarms = [], []
    # Values only, as NAB streams them: this NAB file repeats an hour of
    # timestamps (2014-01-07 02:00-02:55), which the scorer would reject.
    for timestamp, value in series.items():  # one recurrent step per point
        score = stream.score_one(value)
        stream.learn_one(value)
        scores.append(score)
        if stream.classify(score):
            alarms.append(timestamp)
    scores = pd.Series(scores, index=series.index)
    print(f"{len(alarms)} alarms; the first: {[str(t) for t in alarms[:3]]}")
    print(f"highest score {scores.max():.3f} at {scores.idxmax()}")
    if corpus is not None:
        frame = pd.DataFrame({"anomaly_score": scores.clip(0, 1)}, index=series.index)
        result = score_corpus({NAB_FILE: frame}, corpus, "standard")
        print(f"NAB standard score on this one file (threshold optimised): {result.score:.1f}")
        print("labelled anomaly windows:", [(str(a), str(b)) for a, b in corpus[NAB_FILE].windows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rl-steps", type=int, default=20_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["core", "rl", "detector"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if "core" not in args.skip:
        demo_core()
    if "rl" not in args.skip:
        demo_rl(args.rl_steps)
    if "detector" not in args.skip:
        demo_detector()


if __name__ == "__main__":
    main()
