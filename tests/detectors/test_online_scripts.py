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


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_stream", SCRIPTS / "bench_stream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_stream_measures_the_nab_chain(tmp_path):
    out = tmp_path / "bench.json"
    run("bench_stream.py", "--single-points", 40, "--streams", 3, "--steps", 10, "--chunk", 5, "--memory-points", 0,
        "--repeats", 1, "--hidden-size", 8, "--learn", "every=4", "window=8", "--learn-steps", 10,
        "--learn-single-points", 20, "--chain", "--chain-steps", 10, "--chain-probationary", 40,
        "--chain-memory-points", 30, "--json", out)
    results = json.loads(out.read_text())
    chain, memory = results["chain"], results["chain_memory"]
    assert chain["streams"] == 3 and chain["chunk"] == 5 and chain["probationary"] == 40
    assert chain["chain_points_per_s"] > 0 and chain["chain_learning_points_per_s"] > 0
    assert chain["ratio"] == chain["chain_points_per_s"] / chain["baseline_points_per_s"]
    assert chain["ratio_learning"] == chain["chain_learning_points_per_s"] / chain["baseline_points_per_s"]
    assert chain["learning_settings"]["every"] == 4
    assert memory["points"] == 30 and memory["first_mib"] <= memory["peak_mib"] and memory["novelty_block"] == 1
    assert memory["store_full_points"] == 3 * (8 + 8191) and not memory["store_full"]


def test_bench_chain_is_the_nab_chain_and_knows_when_the_store_fills():
    bench = load_bench()
    detector = bench.make_detector(8, 0)
    names = []
    stream = bench.nab_chain(detector, 40)
    while stream is not None:
        names.append(type(stream).__name__)
        stream = getattr(stream, stream.INNER) if hasattr(stream, "INNER") else None
    assert names == ["SpatialAnomaly", "WindowNovelty", "AnomalyLikelihood", "SeasonalSurprise", "StreamScorer"]
    # block 1, window 8: an embedding is stored from row 8 on, one per row; the 8192nd at row 8199
    assert bench.chain_memory(detector, 1, 8199, 3, 0, 40)["store_full"]
    assert not bench.chain_memory(detector, 1, 8196, 3, 0, 40)["store_full"]
