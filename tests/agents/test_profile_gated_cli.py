"""Smoke test of scripts/profile_gated.py (the gated policy's profile in docs/benchmarks_selective_rl.md), run as a user would."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "profile_gated.py"


def test_profile_gated_prints_every_variant_and_the_layer_parts():
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--variants", "gru", "gru-rhythm0.5", "--repeats", "4", "--rounds", "1",
         "--layers", "--cprofile", "gru-rhythm0.5", "--time-indices", "256"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    table = out.split("layers alone")[0]
    assert table.count("gru-rhythm0.5") == 1 and "per 256 env steps" in table
    parts = out.split("layers alone")[1].split("--- cProfile")[0]
    rows = [line.split() for line in parts.splitlines() if line.strip().startswith("gru") and ":" not in line]
    assert [(r[0], r[1], len(r)) for r in rows] == [("gru", "1", 5), ("gru", "32", 5), ("gru-rhythm0.5", "1", 7),
                                                     ("gru-rhythm0.5", "32", 7)]
    assert "cProfile, gru-rhythm0.5" in out and "ncalls" in out.split("cProfile, gru-rhythm0.5")[1]
    shares = [line for line in out.splitlines() if line.startswith("gru-rhythm0.5: ")]
    assert [line.split(",")[0] for line in shares] == ["gru-rhythm0.5: act", "gru-rhythm0.5: train"]
    assert all("share with one time index for the batch" in line for line in shares)
