"""Smoke test of scripts/bench_masking_dict.py (issue 16's throughput): groups, medians, ratios, JSON."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_masking_dict.py"


def test_writes_each_groups_medians_and_ratios_to_its_first_model(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "224", "--chunk", "224", "--repeats", "2", "--warmup", "0",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [(r["group"], r["model"]) for r in results] == [
        ("masks", "sparse-unmasked"), ("masks", "maskable"), ("masks", "stock-lstm"),
        ("dict", "sparse"), ("dict", "sparse-policy-padded"), ("dict", "stock-lstm")]
    for result in results:
        assert len(result["rounds_steps_per_s"]) == 2
        assert result["steps_per_s"] == statistics.median(result["rounds_steps_per_s"])
        first = next(r for r in results if r["group"] == result["group"])
        assert result["round_ratios_to_first"] == [
            a / b for a, b in zip(result["rounds_steps_per_s"], first["rounds_steps_per_s"])]


def test_rejects_zero_counts():
    completed = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "0"], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 2 and "--repeats" in completed.stderr
