"""scripts/score_series.py end to end: a CSV in, a scores CSV and a PNG plot out."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "score_series.py"


def test_score_series_writes_scores_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(600)
    values = np.sin(t / 15) + 0.05 * rng.normal(size=t.size)
    values[450] += 6.0  # one obvious spike after the fit period
    csv = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=t.size, freq="min"), "value": values}).to_csv(
        csv, index=False)
    out, plot = tmp_path / "scores.csv", tmp_path / "plot.png"
    result = subprocess.run([sys.executable, str(SCRIPT), str(csv), "--n-steps", "20", "--fit-fraction", "0.5",
                             "--out", str(out), "--plot", str(plot)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = pd.read_csv(out)
    assert len(scores) == t.size
    score_column = [c for c in scores.columns if "score" in c][0]
    assert scores[score_column].idxmax() == 450  # the spike is the most surprising point
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_series_rejects_a_missing_file(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "missing.csv" in result.stderr
