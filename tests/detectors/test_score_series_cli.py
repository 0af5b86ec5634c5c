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


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_a_numeric_first_column_is_not_read_as_epoch_nanoseconds(tmp_path):
    csv = tmp_path / "numbers.csv"
    pd.DataFrame({"load": np.sin(np.arange(200) / 9.0), "when": pd.date_range("2026-01-01", periods=200,
                                                                              freq="h")}).to_csv(csv, index=False)
    result = run(csv, "--n-steps", "2")
    assert result.returncode != 0
    assert "time column 'load'" in result.stderr and "not datetimes" in result.stderr and "--time-column" in \
        result.stderr and "1970" not in result.stderr
    out = tmp_path / "out.csv"
    ok = run(csv, "--time-column", "when", "--value-column", "load", "--n-steps", "2", "--out", out,
             "--plot", tmp_path / "p.png")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert list(pd.read_csv(out).columns[:2]) == ["when", "load"] and len(pd.read_csv(out)) == 200


def test_a_time_column_that_does_not_parse_is_named(tmp_path):
    csv = tmp_path / "words.csv"
    pd.DataFrame({"stamp": ["soon", "later"] * 50, "value": np.arange(100.0)}).to_csv(csv, index=False)
    result = run(csv, "--n-steps", "2")
    assert result.returncode != 0 and "'stamp'" in result.stderr and "does not parse as datetimes" in result.stderr


def test_header_only_and_missing_columns_name_the_file(tmp_path):
    csv = tmp_path / "header.csv"
    csv.write_text("timestamp,value\n")
    result = run(csv)
    assert result.returncode != 0 and "header.csv has a header but no data rows" in result.stderr
    full = tmp_path / "full.csv"
    pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=50, freq="h"), "value": np.arange(50.0)}
                 ).to_csv(full, index=False)
    result = run(full, "--value-column", "nope")
    assert result.returncode != 0 and "['nope']" in result.stderr and "full.csv" in result.stderr
