"""Smoke tests of scripts/run_nab.py, run as a user would (subprocess)."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparsernn.detectors.nab.corpus import load_nab_corpus, read_results
from sparsernn.detectors.nab.scoring import summarize

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_nab.py"
TWO_FILES = ["realKnownCause/rogue_agent_key_hold.csv", "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv"]


def run_script(*args):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def test_score_mode_reproduces_nab_reference_scores(nab_dir, tmp_path):
    out = tmp_path / "scores.json"
    completed = run_script(
        "--data", nab_dir, "--score", nab_dir / "results", "--detectors", "numenta", "ARTime", "--json", out
    )
    scores = json.loads(out.read_text())
    reference = json.loads((nab_dir / "reference_scores.json").read_text())["optimized_on_these_files"]
    assert set(scores) == {"numenta", "ARTime"}
    for detector, row in scores.items():
        assert set(row) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate", "vus_pr", "auc_pr"}
        assert {p: round(row[p], 2) for p in reference[detector]} == reference[detector]
        assert 0.0 < row["vus_pr"] < 1.0 and 0.0 < row["auc_pr"] < 1.0
    assert "numenta (reference)" in completed.stdout


def test_run_mode_writes_nab_results_and_their_scores(nab_dir, tmp_path):
    results, out = tmp_path / "results", tmp_path / "run.json"
    run_script(
        "--data", nab_dir, "--files", *TWO_FILES, "--detectors", "iforest", "halfspacetrees", "lstm",
        "--results-out", results, "--json", out, "--seed", 1,
    )
    scores = json.loads(out.read_text())
    assert set(scores) == {"iforest", "halfspacetrees", "lstm"}
    frame = pd.read_csv(results / "iforest" / "realKnownCause" / "iforest_rogue_agent_key_hold.csv")
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert frame["anomaly_score"].between(0.0, 1.0).all()

    # The files written are NAB results: scoring them again gives the printed numbers.
    corpus = load_nab_corpus(nab_dir, files=TWO_FILES)
    for detector, row in scores.items():
        assert summarize(read_results(results, detector, corpus), corpus, detector) == pytest.approx(row, abs=1e-12)


def test_a_header_only_data_file_is_named(tmp_path):
    root = tmp_path / "nab"
    (root / "data" / "cat").mkdir(parents=True)
    (root / "data" / "cat" / "empty.csv").write_text("timestamp,value\n")
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"cat/empty.csv": []}))
    (root / "config").mkdir()
    cost = {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}}
    (root / "config" / "profiles.json").write_text(json.dumps(
        {name: cost for name in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")}))
    completed = subprocess.run([sys.executable, str(SCRIPT), "--data", str(root), "--detectors", "surnn"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    assert "empty.csv has a header but no data rows" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_params_reach_the_detector_and_label_its_row(nab_dir, tmp_path):
    """--params router_keep=0.5 ... runs a routed forecaster without novelty/seasonal/spatial: a different
    detector from the default chain, labelled with its settings."""
    one_file, out = TWO_FILES[:1], tmp_path / "run.json"
    run_script("--data", nab_dir, "--files", *one_file, "--detectors", "surnn", "--json", out,
               "--params", "router_keep=0.5", "novelty=false", "seasonal=false", "spatial_tolerance=null",
               "n_steps=4")
    (label, row), = json.loads(out.read_text()).items()
    assert label == "surnn(router_keep=0.5,novelty=false,seasonal=false,spatial_tolerance=null,n_steps=4)"
    run_script("--data", nab_dir, "--files", *one_file, "--detectors", "surnn", "--json", out, "--params", "n_steps=4")
    assert json.loads(out.read_text())["surnn(n_steps=4)"] != row


@pytest.mark.parametrize("params, message", [
    (["router_keep"], "KEY=VALUE"),
    (["novelty=False"], "must be JSON"),
    (["no_such_option=1"], "do not suit detector 'surnn'"),
    (["seasonal=1"], "do not suit detector 'surnn'"),
])
def test_bad_params_are_refused_before_any_file_runs(nab_dir, params, message):
    completed = subprocess.run([sys.executable, str(SCRIPT), "--data", str(nab_dir), "--detectors", "surnn",
                                "--params", *params], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    assert message in completed.stderr and "Traceback" not in completed.stderr


def test_params_are_refused_by_a_baseline(nab_dir):
    completed = subprocess.run([sys.executable, str(SCRIPT), "--data", str(nab_dir), "--detectors", "iforest",
                                "--params", "router_keep=0.1"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2 and "do not suit detector 'iforest'" in completed.stderr
