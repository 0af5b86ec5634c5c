"""scripts/reproduce_hidden_proportion.py (issue 15, item 4): the grid, the dense point, the analysis, resuming."""
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce_hidden_proportion.py"
sys.path.insert(0, str(SCRIPT.parent))
import reproduce_hidden_proportion as hp  # noqa: E402


@pytest.mark.parametrize(("input_size", "budget"), [(1, 256), (2, 2048), (6, 512), (4, 1024)])
def test_dense_point_is_the_largest_dense_gru_within_the_budget_and_solves_to_densities_one(input_size, budget):
    hidden, proportion, exact = hp.dense_point(input_size, budget)
    assert exact <= budget < 3 * (hidden + 1) * (input_size + hidden + 1)
    layer = hp.layer_of(input_size, {"param_budget": exact, "hidden_proportion": proportion})
    assert layer["dense"] and layer["hidden_size"] == hidden and layer["solved_budget"] == exact


def test_grid_holds_every_point_and_one_dense_point_per_budget_and_seed():
    points = hp.grid(2, [512, 2048], [0.1, 0.5, 0.9], [0, 1])
    assert len(points) == 2 * 2 * (3 + 1)
    assert len({hp.point_key(p) for p in points}) == len(points)
    dense = [p for p in points if p["param_budget"] != p["budget"]]
    assert len(dense) == 4 and all(p["param_budget"] < p["budget"] for p in dense)



def test_grid_at_a_fixed_hidden_size_keeps_only_what_that_width_realises_and_no_dense_point():
    # one input, width 64: the input block holds at most 3 * 64 = 192 weights, so at budget 1024 only
    # proportions >= 1 - 192/1024 = 0.81 fit; at budget 256, those >= 0.25
    points = hp.grid(1, [256, 1024], [0.1, 0.2, 0.3, 0.5, 0.9], [0], hidden_size=64)
    assert [(p["budget"], p["hidden_proportion"]) for p in points] == [(256, 0.3), (256, 0.5), (256, 0.9), (1024, 0.9)]
    for point in points:
        layer = hp.layer_of(1, point, 64)
        assert layer["hidden_size"] == 64 and layer["solved_budget"] == point["budget"]
    assert hp.grid(1, [1024], [0.1], [0], hidden_size=8) == []


def curve_rows(task, scores, dense_score, budget=512, kind="rl"):
    rows = [{"task": task, "kind": kind, "budget": budget, "proportion": p, "seed": s, "score": v + s * 0.01,
             "hidden_size": 10, "is_dense_point": False} for p, v in scores.items() for s in (0, 1)]
    rows += [{"task": task, "kind": kind, "budget": budget, "proportion": 0.77, "seed": s, "score": dense_score,
              "hidden_size": 12, "is_dense_point": True} for s in (0, 1)]
    return rows


def test_analysis_rank_correlation_best_proportion_and_leave_one_task_out():
    rising = {0.1: 0.0, 0.5: 1.0, 0.9: 2.0}
    rows = curve_rows("a", rising, 1.5) + curve_rows("b", {0.1: 0.0, 0.5: 3.0, 0.9: 4.0}, 5.0) \
        + curve_rows("c", {0.1: 9.0, 0.5: 1.0, 0.9: 0.0}, 0.5) \
        + curve_rows("n", {0.1: 1.0, 0.5: 0.0, 0.9: 0.0}, 0.0, budget=512, kind="nab")
    report = hp.analyse(rows)
    a = report["curves"]["a|512"]
    assert a["best_proportion"] == 0.9 and a["spearman_rho"] > 0.8 and a["dense_mean"] == 1.5
    assert report["curves"]["c|512"]["spearman_rho"] < -0.8
    loto = {(r["kind"], r["held_out"]): r for r in report["leave_one_task_out"]}
    assert ("nab", "n") not in loto  # alone in its kind: nothing to learn the proportion from
    # held out a: b and c normalised average to (0.5, 0.375, 0.5) -> 0.1 (first maximum)
    assert loto[("rl", "a")]["chosen_proportion"] == 0.1 and loto[("rl", "a")]["chosen_at_least_dense"] is False
    # held out c: a and b both rise -> 0.9, c's worst (rank 3 of 3), below its dense point
    assert loto[("rl", "c")]["chosen_proportion"] == 0.9 and loto[("rl", "c")]["rank_of_chosen"] == 3
    # held out b: a rises, c falls -> (0.5, 0.31, 0.5) -> 0.1, where b scored 0.005
    assert loto[("rl", "b")]["chosen_minus_dense"] == pytest.approx(0.005 - 5.0)


def test_script_trains_the_grid_once_writes_the_report_and_resumes_without_training(tmp_path):
    storage = tmp_path / "hp.db"
    args = [sys.executable, str(SCRIPT), "--rl-configs", str(ROOT / "agents/configs/counting.yaml"), "--nab-files",
            "--rl-budgets", "256", "--proportions", "0.3", "0.7", "--seeds", "0", "--steps", "512",
            "--eval-episodes", "1", "--storage", str(storage), "--out", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "hidden_proportion.json").read_text())
    assert len(report["rows"]) == 3 and sum(r["is_dense_point"] for r in report["rows"]) == 1
    assert {c["budget"] for c in report["curves"].values()} == {256}
    assert report["leave_one_task_out"] == []  # one task: nothing to hold out
    assert (tmp_path / "hidden_proportion.png").stat().st_size > 0
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    studies = optuna.get_all_study_summaries(f"sqlite:///{storage}")
    assert [s.n_trials for s in studies] == [3]  # nothing trained twice
    assert '"study"' not in again.stdout  # no trial printed: none ran
    report_only = subprocess.run(args + ["--report-only"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert report_only.returncode == 0, report_only.stderr[-3000:]
    assert json.loads((tmp_path / "hidden_proportion.json").read_text())["rows"] == report["rows"]
    other = subprocess.run(args + ["--report-only", "--seeds", "7"], capture_output=True, text=True, timeout=600,
                           cwd=ROOT)
    assert other.returncode == 0 and "report is empty" in other.stdout  # the study exists; no seed-7 rows
    missing = subprocess.run(args + ["--report-only", "--steps", "999"], capture_output=True, text=True, timeout=600,
                             cwd=ROOT)
    assert missing.returncode == 2 and "no study" in missing.stderr
