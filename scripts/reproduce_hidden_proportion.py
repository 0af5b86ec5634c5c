"""Does the hidden proportion explain quality at a fixed budget? (issue 15 item 4; arXiv 2509.15057)

The claim: at a fixed number of trainable recurrent weights (``param_budget`` = N_ih + N_hh), the share
that reads the hidden state (``hidden_proportion`` = N_hh / budget) explains quality, so a layer can be
specified a priori. :func:`~sparsernn.core.solve_layer_spec` turns each ``(budget, proportion)`` into the
smallest hidden size and the two block densities that realise it (GRU here).

Each task is one Optuna study (:mod:`sparsernn.agents.sweep`'s storage, default a SQLite file; several
processes or machines can share it, ``--storage``). Its trials are the grid ``budget x proportion x seed``
plus, per budget, the *dense* layer at that budget (the largest dense GRU with at most ``budget`` weights,
run as ``(its exact budget, its own proportion)``: densities 1). Trials are enqueued once; a rerun trains
only what is missing, so an interrupted run resumes.

- RL tasks (``--rl-configs``): :func:`sparsernn.agents.train` with the config's settings, the layer
  replaced; the score is the mean deterministic return of ``--eval-episodes`` episodes.
- NAB dev files (``--nab-files``): :class:`~sparsernn.detectors.SelectiveUpdateDetector` (its defaults,
  the layer replaced) fitted on the probationary rows; the score is minus the forecasts' mean Gaussian
  negative log-likelihood on the normal rows after probation (higher is better; the quantity the forecaster
  is trained on), and the point-wise AUC-PR of its scores is kept beside it.

The report (JSON + PNG in ``--out``): per task and budget, the mean and spread over seeds per proportion,
Spearman's rank correlation of score with proportion, the best proportion, the dense layer's score; and a
leave-one-task-out test of the a-priori claim: the proportion that is best on the *other* tasks (mean of
per-task min-max normalised scores), scored on the held-out task against the dense layer at the same budget.

Usage::

    python scripts/reproduce_hidden_proportion.py --seeds 0 1 2 --steps 40000 --out docs/results/issue15
    python scripts/reproduce_hidden_proportion.py --report-only --out docs/results/issue15
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import torch
from scipy import stats

from sparsernn.agents import load_config, train
from sparsernn.agents.sweep import make_storage, open_study, run_worker
from sparsernn.core import solve_layer_spec

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RL_CONFIGS = ("agents/configs/cartpole_novel.yaml", "agents/configs/cue_memory.yaml",
              "agents/configs/repeat_previous.yaml", "agents/configs/counting.yaml")
NAB_FILES = ("artificialWithAnomaly/art_daily_jumpsup.csv", "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
             "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv", "realKnownCause/nyc_taxi.csv")
CELL = "gru"
GATES = 3  # weight blocks per GRU matrix


def dense_point(input_size: int, budget: int) -> tuple[int, float, int]:
    """``(hidden_size, proportion, exact budget)`` of the largest dense GRU with at most ``budget`` weights."""
    hidden = 1
    while GATES * (hidden + 1) * (input_size + hidden + 1) <= budget:
        hidden += 1
    exact = GATES * hidden * (input_size + hidden)
    return hidden, hidden / (input_size + hidden), exact


def feasible(input_size: int, budget: int, proportion: float, hidden_size: int | None) -> bool:
    """Whether ``solve_layer_spec`` can realise ``(budget, proportion)`` (at ``hidden_size`` when given)."""
    try:
        solve_layer_spec(input_size, CELL, budget, proportion, hidden_size)
    except ValueError:
        return False
    return True


def grid(input_size: int, budgets: list[int], proportions: list[float], seeds: list[int],
         hidden_size: int | None = None) -> list[dict]:
    """The trials of one task: every ``(budget, proportion, seed)`` and the dense layer per budget and seed.

    With ``hidden_size`` every layer has that width: the proportions it cannot realise at a budget (the
    input block holds at most ``3 * hidden_size * input_size`` weights, the hidden block
    ``3 * hidden_size ** 2``) are left out, and so is the dense layer (another width)."""
    points = []
    for budget in budgets:
        _, dense_proportion, exact = dense_point(input_size, budget)
        for seed in seeds:
            points += [{"budget": budget, "param_budget": budget, "hidden_proportion": p, "seed": seed}
                       for p in proportions if feasible(input_size, budget, p, hidden_size)]
            if hidden_size is None:
                points.append({"budget": budget, "param_budget": exact, "hidden_proportion": dense_proportion,
                               "seed": seed})
    return points


def layer_of(input_size: int, point: dict, hidden_size: int | None = None) -> dict:
    """The point's layer: hidden size, densities, exact budget and proportion as solved (at ``hidden_size``
    when given, else the smallest width that realises the point)."""
    spec = solve_layer_spec(input_size, CELL, int(point["param_budget"]), float(point["hidden_proportion"]),
                            hidden_size)
    return {"hidden_size": spec.hidden_size, "density_ih": spec.density_ih, "density_hh": spec.density_hh,
            "solved_budget": spec.budget, "solved_proportion": spec.hidden_proportion,
            "dense": spec.density_ih == 1.0 and spec.density_hh == 1.0}


# ----------------------------------------------------------------- objectives
def rl_objective(config: dict, steps: int | None, eval_episodes: int, hidden_size: int | None = None):
    """Train the config's agent with the trial's layer; the mean deterministic return."""
    def score(point: dict, layer: dict) -> dict:
        policy_kwargs = {**(config.get("policy_kwargs") or {}), "cell": CELL, "hidden_size": hidden_size,
                         "param_budget": int(point["param_budget"]),
                         "hidden_proportion": float(point["hidden_proportion"])}
        kwargs = {**config, "policy_kwargs": policy_kwargs, "seed": int(point["seed"]), "eval_episodes": eval_episodes}
        if steps:
            kwargs["total_timesteps"] = steps
        result = train(**kwargs)
        return {"score": result.evaluation.mean_return, "std_return": result.evaluation.std_return,
                "steps": kwargs["total_timesteps"]}
    return score


def nab_objective(path: Path, name: str):
    """Fit the detector with the trial's layer on the file's probationary rows; minus the forecasts' NLL."""
    from sparsernn.detectors import SelectiveUpdateDetector
    from sparsernn.detectors.forecaster import forecast
    from sparsernn.detectors.metrics import auc_pr
    from sparsernn.detectors.nab.corpus import load_nab_corpus

    data = load_nab_corpus(path, files=[name])[name]
    values, labels, start = data.values.to_numpy(float), data.labels, data.probationary_length

    def score(point: dict, layer: dict) -> dict:
        detector = SelectiveUpdateDetector(hidden_size=layer["hidden_size"], cell=CELL,
                                           density_ih=layer["density_ih"], density_hh=layer["density_hh"],
                                           seed=int(point["seed"]), progress=False)
        detector.fit(values[:start])
        u = torch.from_numpy(detector.normalize(values[:, None]).astype(np.float32))[:, None]  # (T, 1, 1)
        mean, var, _ = forecast(detector.model_, u, detector.model_.layer.initial_state(1))
        nll = 0.5 * (torch.log(var[:-1]) + (u[1:] - mean[:-1]).square() / var[:-1]).mean((1, 2)).double().numpy()
        normal = labels[1:] == 0
        normal[: start - 1] = False
        scores = np.asarray(detector.decision_function(values))[start:]
        return {"score": -float(nll[normal].mean()), "auc_pr": auc_pr(labels[start:], scores)}
    return score


def point_key(point: dict) -> tuple:
    return (int(point["budget"]), int(point["param_budget"]), round(float(point["hidden_proportion"]), 9),
            int(point["seed"]))


def objective_for(input_size: int, score, allowed: set[tuple], hidden_size: int | None = None):
    """The study's objective; a trial the queue did not fix (another worker took the last point) is pruned."""
    def objective(trial: optuna.Trial) -> float:
        point = {"budget": trial.suggest_int("budget", 1, 10 ** 7),
                 "param_budget": trial.suggest_int("param_budget", 1, 10 ** 7),
                 "hidden_proportion": trial.suggest_float("hidden_proportion", 0.0, 1.0),
                 "seed": trial.suggest_int("seed", 0, 2 ** 31 - 1)}
        if point_key(point) not in allowed:
            trial.study.stop()
            raise optuna.TrialPruned("not an enqueued point: the queue is empty")
        layer = layer_of(input_size, point, hidden_size)
        for key, value in layer.items():
            trial.set_user_attr(key, value)
        start = time.perf_counter()
        result = score(point, layer)
        for key, value in result.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        print(json.dumps({"study": trial.study.study_name, **point, **layer, **result}), flush=True)
        return float(result["score"])
    return objective


def run_task(storage: str, study_name: str, input_size: int, points: list[dict], score,
             hidden_size: int | None = None) -> optuna.Study:
    """Enqueue the points not yet in the study (complete, running or waiting), then run the waiting ones in this
    process; several processes on one storage share the queue (a point runs once)."""
    study = open_study(storage, study_name, optuna.samplers.RandomSampler(seed=0), direction="maximize")
    done = {point_key(t.system_attrs.get("fixed_params") or t.params) for t in study.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.WAITING,
                           optuna.trial.TrialState.RUNNING)}
    missing = [p for p in points if point_key(p) not in done]
    for point in missing:
        study.enqueue_trial(point)
    waiting = sum(t.state == optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))
    run_worker(study, objective_for(input_size, score, {point_key(p) for p in points}, hidden_size),
               n_trials=waiting)
    return study


# ----------------------------------------------------------------- report
def rows_of(study: optuna.Study, task: str, kind: str) -> list[dict]:
    return [{"task": task, "kind": kind, "budget": t.params["budget"], "param_budget": t.params["param_budget"],
             "proportion": t.params["hidden_proportion"],
             "seed": t.params["seed"], "dense": bool(t.user_attrs["dense"]), "score": t.value,
             **{k: t.user_attrs[k] for k in ("hidden_size", "density_ih", "density_hh", "solved_budget", "auc_pr")
                if k in t.user_attrs}}
            for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def analyse(rows: list[dict]) -> dict:
    """Per (task, budget) curves, rank correlations and best proportions; the leave-one-task-out test."""
    curves = {}
    for task in sorted({r["task"] for r in rows}):
        for budget in sorted({r["budget"] for r in rows if r["task"] == task}):
            mine = [r for r in rows if r["task"] == task and r["budget"] == budget]
            swept = [r for r in mine if not r["is_dense_point"]]
            props = sorted({r["proportion"] for r in swept})
            means = [float(np.mean([r["score"] for r in swept if r["proportion"] == p])) for p in props]
            spreads = [float(np.std([r["score"] for r in swept if r["proportion"] == p])) for p in props]
            dense = [r["score"] for r in mine if r["is_dense_point"]]
            scores = [r["score"] for r in swept]
            rho, pvalue = (math.nan, math.nan)  # undefined for one proportion or a task every layer saturates
            if len(props) > 1 and max(scores) > min(scores):
                rho, pvalue = stats.spearmanr([r["proportion"] for r in swept], scores)
            curves[f"{task}|{budget}"] = {
                "task": task, "kind": mine[0]["kind"], "budget": budget, "proportions": props, "mean": means,
                "std": spreads, "seeds": len({r["seed"] for r in swept}),
                "hidden_size": [next(r["hidden_size"] for r in swept if r["proportion"] == p) for p in props],
                "best_proportion": props[int(np.argmax(means))], "spearman_rho": float(rho),
                "spearman_p": float(pvalue), "dense_mean": float(np.mean(dense)) if dense else None,
                "dense_std": float(np.std(dense)) if dense else None,
                "dense_proportion": next((r["proportion"] for r in mine if r["is_dense_point"]), None)}
    return {"curves": curves, "leave_one_task_out": leave_one_task_out(curves)}


def normalised(curve: dict) -> np.ndarray:
    means = np.asarray(curve["mean"])
    span = means.max() - means.min()
    return (means - means.min()) / span if span > 0 else np.full_like(means, 0.5)


def leave_one_task_out(curves: dict) -> list[dict]:
    """Per kind (RL, NAB), budget and held-out task: the proportion best on the others, scored on the held-out one."""
    out = []
    for kind, budget in sorted({(c["kind"], c["budget"]) for c in curves.values()}):
        group = {c["task"]: c for c in curves.values() if c["kind"] == kind and c["budget"] == budget}
        for held, curve in group.items():
            others = [c for t, c in group.items() if t != held and c["proportions"] == curve["proportions"]]
            if not others:
                continue
            chosen_index = int(np.argmax(np.mean([normalised(c) for c in others], axis=0)))
            chosen = curve["proportions"][chosen_index]
            score = curve["mean"][chosen_index]
            rank = 1 + sum(m > score for m in curve["mean"])
            row = {"budget": budget, "held_out": held, "kind": curve["kind"], "chosen_proportion": chosen,
                   "score_at_chosen": score, "best_proportion": curve["best_proportion"],
                   "best_score": max(curve["mean"]), "rank_of_chosen": rank, "of": len(curve["mean"]),
                   "dense_mean": curve["dense_mean"], "dense_proportion": curve["dense_proportion"]}
            if curve["dense_mean"] is not None:
                row["chosen_minus_dense"] = score - curve["dense_mean"]
                row["chosen_at_least_dense"] = bool(score >= curve["dense_mean"])
            out.append(row)
    return out


def plot(report: dict, path: Path) -> None:
    tasks = sorted({c["task"] for c in report["curves"].values()})
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for i, curve in enumerate(c for c in report["curves"].values() if c["task"] == task):
            line = ax.errorbar(curve["proportions"], curve["mean"], yerr=curve["std"], marker="o", capsize=2,
                               label=f"budget {curve['budget']} (rho {curve['spearman_rho']:+.2f})")
            if curve["dense_mean"] is not None:
                ax.axhline(curve["dense_mean"], ls="--", color=line[0].get_color(), lw=1)
                ax.plot([curve["dense_proportion"]], [curve["dense_mean"]], marker="*", ms=10,
                        color=line[0].get_color())
        ax.set_title(task.split("/")[-1].replace(".yaml", "").replace(".csv", ""), fontsize=9)
        ax.set_xlabel("hidden proportion")
        ax.set_ylabel("mean return" if curve["kind"] == "rl" else "- forecast NLL")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("Score vs hidden proportion at a fixed budget (dashed, star: dense GRU at that budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rl-configs", nargs="*", default=list(RL_CONFIGS))
    parser.add_argument("--nab-files", nargs="*", default=list(NAB_FILES))
    parser.add_argument("--nab-data", default="../shared/data/nab")
    parser.add_argument("--rl-budgets", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--nab-budgets", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--proportions", nargs="+", type=float, default=list(PROPORTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="RL steps per trial (default: the config's)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--storage", default="runs/sweeps/hidden_proportion.db",
                        help="Optuna storage shared by every process running this sweep")
    parser.add_argument("--study-prefix", default="hidden-proportion")
    parser.add_argument("--report-only", action="store_true", help="write the report from the studies; train nothing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=None,
                        help="fix every layer's width (separates proportion from width); the proportions that "
                             "width cannot realise are left out, and the dense layer; studies named '...-h<N>'")
    parser.add_argument("--out", default="docs/results/issue15")
    args = parser.parse_args(argv)
    for p in args.proportions:
        if not 0.0 < p < 1.0:
            parser.error(f"--proportions must lie in (0, 1); got {p}")
    if args.hidden_size is not None and args.hidden_size < 1:
        parser.error(f"--hidden-size must be >= 1; got {args.hidden_size}")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(args.storage).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    tasks = [("rl", c) for c in args.rl_configs] + [("nab", f) for f in args.nab_files]
    for kind, task in tasks:
        if kind == "rl":
            config = load_config(task)
            config.pop("algo", None)
            import gymnasium as gym
            import sparsernn.envs  # noqa: F401  (registers the sparsernn/ ids)
            input_size = int(np.prod(gym.make(config["env_id"], **(config.get("env_kwargs") or {}))
                                     .observation_space.shape))
            budgets, score = args.rl_budgets, (None if args.report_only else
                                                rl_objective(config, args.steps, args.eval_episodes,
                                                             args.hidden_size))
            suffix = f"-steps{args.steps}" if args.steps else ""
        else:
            input_size, budgets, suffix = 1, args.nab_budgets, ""
            score = None if args.report_only else nab_objective(Path(args.nab_data), task)
        if args.hidden_size is not None:
            suffix += f"-h{args.hidden_size}"
        name = f"{args.study_prefix}-{Path(task).stem}{suffix}"
        points = grid(input_size, budgets, args.proportions, args.seeds, args.hidden_size)
        if not points:
            print(f"{task}: no point of the grid is feasible at hidden size {args.hidden_size}; skipped")
            continue
        if args.report_only:
            try:
                study = optuna.load_study(study_name=name, storage=make_storage(args.storage))
            except KeyError:
                parser.error(f"--report-only: no study {name!r} in {args.storage} (run without --report-only first)")
        else:
            study = run_task(args.storage, name, input_size, points, score, args.hidden_size)
        grid_proportions = {round(p, 9) for p in args.proportions}
        for row in rows_of(study, task, kind):
            # the dense point of a budget is run at its own exact budget and proportion
            row["is_dense_point"] = (row["param_budget"] != row["budget"]
                                     or round(row["proportion"], 9) not in grid_proportions)
            if row["budget"] in budgets and row["seed"] in args.seeds and (
                    row["is_dense_point"] or round(row["proportion"], 9) in grid_proportions):
                rows.append(row)
    report = analyse(rows)
    report.update(settings={k: v for k, v in vars(args).items() if k != "report_only"}, rows=rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hidden_proportion.json").write_text(json.dumps(report, indent=1))
    if not report["curves"]:
        print("no completed trial matches these settings: the report is empty and no figure is drawn")
        return
    plot(report, out / "hidden_proportion.png")
    print(f"{'task':>44s} {'budget':>6s} {'best p':>6s} {'rho':>6s} {'p-val':>6s} {'best':>9s} {'dense':>9s}")
    for c in report["curves"].values():
        dense = "" if c["dense_mean"] is None else f"{c['dense_mean']:9.3f}"
        print(f"{c['task']:>44s} {c['budget']:6d} {c['best_proportion']:6.1f} {c['spearman_rho']:+6.2f} "
              f"{c['spearman_p']:6.3f} {max(c['mean']):9.3f} {dense}")
    print("leave one task out (proportion best on the other tasks, on the held-out one):")
    for r in report["leave_one_task_out"]:
        print(f"  budget {r['budget']:5d} {r['held_out']:>44s}: chosen {r['chosen_proportion']:.1f} "
              f"(rank {r['rank_of_chosen']}/{r['of']}, best {r['best_proportion']:.1f}) "
              f"chosen - dense = {r.get('chosen_minus_dense', float('nan')):+.3f}")


if __name__ == "__main__":
    main()
