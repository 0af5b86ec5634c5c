"""Smoke tests of the online-learning scripts, run as a user would (subprocess), at tiny sizes."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run(script: str, *args, expect: int = 0) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, str(SCRIPTS / script), *map(str, args)], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == expect, completed.stderr[-3000:]
    return completed


def test_bench_stream_measures_learning_on_and_off(tmp_path):
    out = tmp_path / "bench.json"
    run("bench_stream.py", "--single-points", 40, "--streams", 3, "--steps", 10, "--chunk", 5, "--memory-points", 0,
        "--repeats", 1, "--hidden-size", 8, "--learn", "every=4", "window=8", "--learn-steps", 20,
        "--learn-single-points", 20, "--json", out)
    learned = json.loads(out.read_text())["online_learning"]
    assert learned["settings"]["every"] == 4 and learned["settings"]["window"] == 8
    assert learned["on"]["many_points_per_s"] > 0 and learned["off"]["one_points_per_s"] > 0
    assert learned["ratio_many"] == learned["on"]["many_points_per_s"] / learned["off"]["many_points_per_s"]


@pytest.mark.parametrize("pairs, words", [(["every=0"], "every"), (["every"], "KEY=VALUE"),
                                          (["lr=1e-3"], "unknown settings"), (["window=x"], "number")])
def test_bench_stream_refuses_bad_learning_settings(pairs, words, capsys):
    spec = importlib.util.spec_from_file_location("bench_stream", SCRIPTS / "bench_stream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["--learn", *pairs])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_online_adaptation_writes_its_table(tmp_path):
    out = tmp_path / "adaptation.json"
    run("online_adaptation.py", "--seeds", 0, "--gates", "event", "--fit", 100, "--a", 60, "--b", 60, "--head", 10,
        "--tail", 10, "--n-steps", 2, "--window", 8, "--json", out)
    record = json.loads(out.read_text())
    assert set(record["summary"]) == {"event/frozen", "event/online"}
    assert len(record["runs"]) == 2 and record["learning"]["window"] == 8
    entry = record["summary"]["event/online"]["nll"]
    assert entry["forgetting"] == entry["A_return"] - entry["A_before"]
