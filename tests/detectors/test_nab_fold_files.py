"""scripts/nab_fold_files.py: per-file held-out scores add up to the fold's, and its alarm rows are NAB's FPs.

The chain's score cache is filled with the numenta reference detector's results (so nothing runs), and
scripts/nab_crossval.py writes the folds it reads.
"""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sparsernn.detectors.nab.corpus import load_nab_corpus, results_path
from sparsernn.detectors.nab.crossval import cached_scores, category_folds, config_key

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script():
    spec = importlib.util.spec_from_file_location("nab_fold_files", SCRIPTS / "nab_fold_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_files_add_up_to_the_fold_and_their_alarms_are_the_false_positives(nab_dir, tmp_path):
    corpus = load_nab_corpus(nab_dir)
    cache, key = tmp_path / "cache", config_key("surnn", {}, 0)
    for name in corpus:  # numenta's scores as the cached scores of the chain's row {} (seed 0)
        category, file = name.split("/")
        target = results_path(cache, key, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nab_dir / "results" / "numenta" / category / f"numenta_{file}", target)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"fixed": {"default": {}}}))
    loco = tmp_path / "loco.json"
    done = subprocess.run([sys.executable, str(SCRIPTS / "nab_crossval.py"), "--data", str(nab_dir), "--grid-file",
                           str(grid), "--cache", str(cache), "--references", "--profiles", "standard", "--json",
                           str(loco)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    folds = json.loads(loco.read_text())["rows"]["surnn default"]["standard"]["folds"]

    script = load_script()
    cost, scores = corpus.profile("standard"), cached_scores(corpus, cache, "surnn", {}, 0)
    for fold in folds:
        rows = script.held_out_files(corpus, cost, scores, category_folds(corpus)[fold["held_out"]], fold["threshold"])
        assert sum(r["score"] for r in rows) == pytest.approx(fold["raw_score"], abs=1e-9)
        for r in rows:
            assert len(r["alarms"]) == r["fp"], r["file"]
    printed = subprocess.run([sys.executable, str(SCRIPTS / "nab_fold_files.py"), "--data", str(nab_dir),
                              "--grid-file", str(grid), "--cache", str(cache), "--crossval", str(loco),
                              "--rows", "default", "--held-out", "realKnownCause"],
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "realKnownCause held out" in printed.stdout and "nyc_taxi" in printed.stdout
    bad = subprocess.run([sys.executable, str(SCRIPTS / "nab_fold_files.py"), "--data", str(nab_dir), "--grid-file",
                          str(grid), "--cache", str(cache), "--crossval", str(loco), "--rows", "nope"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--rows: 'nope'" in bad.stderr
