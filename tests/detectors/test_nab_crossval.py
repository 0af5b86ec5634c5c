"""Leave-one-category-out cross-validation (detectors/nab/crossval.py, scripts/nab_crossval.py).

Tiny NAB corpora built in memory: 100-row files (15 probationary rows), one
window at rows 40-59, standard profile (tp 1, fp 0.11, fn 1).
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors.nab.corpus import CostProfile, NABCorpus, NABDataFile
from sparsernn.detectors.nab.baselines import NABStreamDetector
from sparsernn.detectors.nab.crossval import (
    cached_scores,
    category_folds,
    config_key,
    config_label,
    expand_grid,
    leave_one_category_out,
)
from sparsernn.detectors.nab.scoring import score_corpus

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "nab_crossval.py"
PROFILES = {"standard": CostProfile("standard", 1.0, 0.11, 1.0),
            "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0)}


def nab_file(name, windows=((40, 59),), n=100):
    index = pd.date_range("2020-01-01", periods=n, freq="5min", name="timestamp")
    values = pd.Series(np.sin(np.arange(n) / 5.0), index=index, name="value")
    return NABDataFile(name, values, tuple((index[s], index[e]) for s, e in windows))


def corpus_of(*files):
    return NABCorpus({f.name: f for f in files}, PROFILES)


def spikes(n=100, **at):
    scores = np.zeros(n)
    for row, value in at.items():
        scores[int(row[1:])] = value
    return scores


@pytest.fixture
def corpus():
    return corpus_of(nab_file("a/f.csv"), nab_file("b/f.csv"), nab_file("c/f.csv"), nab_file("d/quiet.csv", ()))


def test_folds_are_the_categories_sorted(corpus):
    extra = corpus_of(*corpus.values(), nab_file("a/g.csv"))
    assert category_folds(extra) == {"a": ["a/f.csv", "a/g.csv"], "b": ["b/f.csv"], "c": ["c/f.csv"],
                                     "d": ["d/quiet.csv"]}
    result = leave_one_category_out({"x": {n: np.zeros(100) for n in extra}}, extra)
    assert [f.held_out for f in result.folds] == ["a", "b", "c", "d"]
    assert [f.n_files for f in result.folds] == [2, 1, 1, 1]


def test_the_combination_matches_a_hand_computation(corpus):
    # a: detection at the window's first row (+1); b: a false positive before the window (-0.11) and
    # the window missed (-1); c: a detection at row 45 (S(-15/20) / S(-1)) seen at thresholds <= 0.5.
    scores = {"a/f.csv": spikes(r40=0.8), "b/f.csv": spikes(r20=0.8), "c/f.csv": spikes(r45=0.5),
              "d/quiet.csv": np.zeros(100)}
    sigmoid = lambda x: 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0  # noqa: E731
    w45 = sigmoid(-15 / 20) / sigmoid(-1.0)
    # fold a: training b, c picks 0.5 (-0.11 - 1 + w45 > -2); a at 0.5: +1
    # fold b: training a, c picks 0.5 (1 + w45); b at 0.5: -0.11 - 1
    # fold c: training a, b picks 0.8 (1 - 1.11 > -2); c at 0.8 misses: -1
    # fold d: nothing above 0, any threshold > 0 scores 0
    raw = 1.0 + (-1.11) + (-1.0) + 0.0
    null, perfect = -3.0, 3.0
    result = leave_one_category_out({"x": scores}, corpus)
    assert [f.threshold for f in result.folds[:3]] == [0.5, 0.5, 0.8]
    assert [f.raw_score for f in result.folds] == pytest.approx([1.0, -1.11, -1.0, 0.0])
    assert (result.null_score, result.perfect_score) == (null, perfect)
    assert result.raw_score == pytest.approx(raw)
    assert result.score == pytest.approx(100.0 * (raw - null) / (perfect - null))  # 31.5
    assert math.isnan(result.folds[3].score) and result.folds[0].score == pytest.approx(100.0)
    # in-sample: chosen on all four files (0.5: 1 - 1.11 + w45), scored there
    assert result.in_sample_threshold == 0.5
    assert result.in_sample_score == pytest.approx(100.0 * (1.0 - 1.11 + w45 - null) / (perfect - null))
    assert result.in_sample_score == pytest.approx(score_corpus(scores, corpus, "standard").score)


def test_the_held_out_category_does_not_leak_into_the_choice(corpus):
    rng = np.random.default_rng(0)
    candidates = {k: {n: rng.random(100) ** 8 for n in corpus} for k in ("A", "B", "C")}
    before = leave_one_category_out(candidates, corpus)
    for k, fold in enumerate(before.folds):
        # the choice agrees with NAB's optimiser run on the training files only
        train = corpus.subset([n for n in corpus if corpus[n].category != fold.held_out])
        best = max(candidates, key=lambda c: score_corpus({n: candidates[c][n] for n in train}, train).score)
        assert fold.config == best
        assert fold.threshold == score_corpus({n: candidates[best][n] for n in train}, train).threshold
        # rewrite every candidate's scores on the held-out files: the choice must not move
        changed = {c: {n: (np.where(np.arange(100) == 40, 1.0, 0.0) if c != fold.config else 1.0 - s)
                       if corpus[n].category == fold.held_out else s for n, s in by_file.items()}
                   for c, by_file in candidates.items()}
        after = leave_one_category_out(changed, corpus).folds[k]
        assert (after.config, after.threshold, after.train_score) == (fold.config, fold.threshold, fold.train_score)


def test_a_candidate_chosen_in_every_fold_scores_as_the_chosen_one(corpus):
    good = {"a/f.csv": spikes(r40=0.9), "b/f.csv": spikes(r40=0.9), "c/f.csv": spikes(r40=0.9),
            "d/quiet.csv": np.zeros(100)}
    bad = {n: spikes(r20=0.95) for n in corpus}
    result = leave_one_category_out({"bad": bad, "good": good}, corpus)
    assert [f.config for f in result.folds] == ["good"] * 4
    assert result.score == pytest.approx(100.0) and result.in_sample_config == "good"
    tie = leave_one_category_out({"first": good, "second": dict(good)}, corpus)
    assert {f.config for f in tie.folds} == {"first"}  # ties go to the first candidate


class Counting(NABStreamDetector):
    calls = 0

    def __init__(self, seed=0, level=0.5):
        self.seed, self.level = seed, level

    def run(self, values, probationary, timestamps=None):
        Counting.calls += 1
        return np.clip(np.abs(np.asarray(values)) * self.level + 1e-3 * np.arange(len(values)) / 7.0, 0.0, 1.0)


def test_cached_scores_are_computed_once_and_read_back_exactly(corpus, tmp_path):
    Counting.calls = 0
    first = cached_scores(corpus, tmp_path, "counting", {"level": 0.3}, factory=Counting)
    assert Counting.calls == len(corpus)
    again = cached_scores(corpus, tmp_path, "counting", {"level": 0.3}, factory=Counting)
    assert Counting.calls == len(corpus)  # nothing recomputed
    assert all(np.array_equal(first[n], again[n]) for n in corpus)  # bit for bit through the CSV
    key = config_key("counting", {"level": 0.3})
    (tmp_path / key / "b" / f"{key}_f.csv").unlink()
    cached_scores(corpus, tmp_path, "counting", {"level": 0.3}, factory=Counting)
    assert Counting.calls == len(corpus) + 1  # only the missing file
    other = cached_scores(corpus, tmp_path, "counting", {"level": 0.6}, factory=Counting)
    assert Counting.calls == 2 * len(corpus) + 1 and not np.array_equal(other["a/f.csv"], first["a/f.csv"])
    assert json.loads((tmp_path / key / "config.json").read_text())["params"] == {"level": 0.3}
    assert config_key("counting", {"b": 1, "a": 2}) == config_key("counting", {"a": 2, "b": 1})
    assert config_label("surnn", {"update_gate": None, "seasonal": True}) == "surnn(seasonal=true,update_gate=null)"


def test_arguments_are_checked_by_name(corpus, tmp_path):
    scores = {n: np.zeros(100) for n in corpus}
    with pytest.raises(ValueError, match="candidates"):
        leave_one_category_out({}, corpus)
    with pytest.raises(ValueError, match="candidates.*'x'"):
        leave_one_category_out({"x": {"a/f.csv": np.zeros(100)}}, corpus)
    with pytest.raises(ValueError, match="profile"):
        leave_one_category_out({"x": scores}, corpus, "nope")
    with pytest.raises(ValueError, match="corpus"):
        leave_one_category_out({"x": {"a/f.csv": np.zeros(100)}}, corpus_of(nab_file("a/f.csv")))
    with pytest.raises(ValueError, match="grid"):
        expand_grid({"seasonal": []})
    with pytest.raises(ValueError, match="detector"):
        cached_scores(corpus, tmp_path, "no-such-detector")
    with pytest.raises(TypeError, match="level2"):
        cached_scores(corpus, tmp_path, "counting", {"level2": 1}, factory=Counting)
    assert expand_grid({"a": [1, 2], "b": [None]}) == [{"a": 1, "b": None}, {"a": 2, "b": None}]


def test_script_scores_the_reference_detectors(nab_dir, tmp_path):
    out = tmp_path / "loco.json"
    completed = subprocess.run([sys.executable, str(SCRIPT), "--data", str(nab_dir), "--references", "numenta",
                                "--profiles", "standard", "--cache", str(tmp_path / "cache"), "--json", str(out)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    row = json.loads(out.read_text())["rows"]["numenta (reference)"]["standard"]
    assert round(row["in_sample_score"], 2) == 66.59  # NAB's own optimised score on these files
    assert [f["held_out"] for f in row["folds"]] == ["artificialNoAnomaly", "artificialWithAnomaly",
                                                     "realAWSCloudwatch", "realKnownCause"]
    assert row["score"] < row["in_sample_score"]
    bad = subprocess.run([sys.executable, str(SCRIPT), "--data", str(nab_dir), "--grid", "seasonal=maybe"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--grid seasonal" in bad.stderr
