"""Smoke test of scripts/bench_rl.py's plumbing (rounds, medians, ratios, JSON), run as a user would."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_rl.py"


def test_bench_rl_writes_medians_and_per_round_ratios(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "64", "--repeats", "2", "--warmup", "64",
         "--variants", "stock-lstm", "gru", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["meta"]["repeats"] == 2 and data["meta"]["steps"] == 64
    stock, gru = data["results"]
    assert [stock["variant"], gru["variant"]] == ["stock-lstm", "gru"]
    for result in (stock, gru):
        assert len(result["rounds_steps_per_s"]) == 2
        assert result["steps_per_s"] == statistics.median(result["rounds_steps_per_s"])
    assert gru["ratio_to_stock"] == gru["steps_per_s"] / stock["steps_per_s"]
    assert gru["round_ratios"] == [a / b for a, b in zip(gru["rounds_steps_per_s"], stock["rounds_steps_per_s"])]
    assert "x stock" in completed.stdout


def test_bench_rl_rejects_zero_repeats():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "0"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 2
    assert "--repeats" in completed.stderr
