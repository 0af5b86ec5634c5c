"""scripts/retention_table.py: shares of the baseline from rl_quality's rows, the latest row per seed."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "retention_table.py"


def run(*args):
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_pivot_gives_means_and_shares_and_counts_a_repeated_seed_once(tmp_path):
    rows = [("gru", 0, 100.0), ("gru", 1, 300.0), ("routed", 0, 50.0), ("routed", 1, 1.0), ("routed", 1, 250.0)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"env_id": "E", "variant": v, "seed": s, "mean_return": r}) + "\n"
                            for v, s, r in rows))
    out = run(str(path), "--variants", "routed", "--pivot")
    assert "| E | 200 (100, 300) | 150 (0.75) |" in out
    assert "| E | routed | 2 | 150 | 50, 250 | 0.75 |" in run(str(path))
