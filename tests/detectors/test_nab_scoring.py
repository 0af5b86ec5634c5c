"""The NAB scorer: hand-computed cases, the threshold sweep, and NAB's own numbers.

The reference numbers come from the corpus in ../shared/data/nab:
``results/<detector>/...`` carry NAB's per-row ``S(t)_<profile>`` columns and
``reference_scores.json`` the final scores NAB's scorer printed for these 35
files (fixed thresholds from config/thresholds.json, and thresholds optimised
on these files).
"""
import functools
import math

import numpy as np
import pandas as pd
import pytest

from sparsernn.detectors.nab.corpus import (
    CostProfile,
    NABCorpus,
    NABDataFile,
    load_nab_corpus,
    load_reference_scores,
    read_results,
)
from sparsernn.detectors.nab.scoring import (
    normalized_score,
    reference_thresholds,
    score_all_profiles,
    score_corpus,
    score_results_dir,
)
from sparsernn.detectors.nab.sweep import (
    legacy_row_scores,
    scaled_sigmoid,
    score_at_threshold,
    sweep_file,
    threshold_curve,
)

PROFILES = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}
REFERENCE_DETECTORS = ["numenta", "ARTime", "windowedGaussian", "random"]


@functools.lru_cache(maxsize=1)
def _corpus(path):
    return load_nab_corpus(path)


@functools.lru_cache(maxsize=4)
def _results(path, detector):
    return read_results(path / "results", detector, _corpus(path))


def synthetic_file(n=100, windows=((40, 59),), name="cat/series.csv"):
    index = pd.date_range("2020-01-01", periods=n, freq="5min", name="timestamp")
    values = pd.Series(np.zeros(n), index=index, name="value")
    return NABDataFile(name, values, tuple((index[s], index[e]) for s, e in windows))


def synthetic_corpus(*files):
    return NABCorpus({f.name: f for f in files}, PROFILES)


def detections(n, rows):
    scores = np.zeros(n)
    scores[list(rows)] = 1.0
    return scores


def test_scaled_sigmoid_matches_nab():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866142981514305, abs=1e-15)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131, abs=1e-15)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == pytest.approx(2 / (1 + math.exp(15)) - 1, abs=1e-15)  # NAB: -1 only past 3
    assert scaled_sigmoid(3.5) == -1.0


# One window on rows 40..59 of a 100-row file; rows 0..14 are probationary.
# Expected raw scores (standard profile), worked out from NAB's formulas:
#   first window row            : S(-20/20) / S(-1) = 1
#   row 45                      : S(-(59 - 45 + 1) / 20) / S(-1) = 0.9669890878000605
#   row 70, after the window    : 0.11 * S((70 - 59) / 19) = -0.09846884215047913
@pytest.mark.parametrize(
    "rows, expected",
    [
        ((), -1.0),  # the window is missed
        ((40,), 1.0),
        ((45,), 0.9669890878000605),
        ((45, 40, 50), 1.0),  # only the first detection in a window counts
        ((70,), -1.0 - 0.09846884215047913),
        ((20,), -1.0 - 0.11),  # before any window: -fpWeight
        ((10,), -1.0),  # probationary rows are ignored
        ((10, 40, 20), 1.0 - 0.11),
    ],
)
def test_raw_score_of_hand_computed_cases(rows, expected):
    data_file = synthetic_file()
    corpus = synthetic_corpus(data_file)
    result = score_corpus({data_file.name: detections(100, rows)}, corpus, "standard", threshold=0.5)
    assert result.raw_score == pytest.approx(expected, abs=1e-12)
    assert result.null_score == -1.0 and result.perfect_score == 1.0
    assert result.score == pytest.approx(100 * (expected + 1) / 2, abs=1e-10)


def test_false_positive_far_after_a_window_costs_the_full_weight():
    data_file = synthetic_file(windows=((20, 24),))  # width 5: position (40 - 24) / 4 = 4 > 3
    corpus = synthetic_corpus(data_file)
    result = score_corpus({data_file.name: detections(100, [40])}, corpus, "reward_low_FP_rate", threshold=0.5)
    assert result.raw_score == pytest.approx(-1.0 - 0.22, abs=1e-12)


def test_a_score_equal_to_the_threshold_is_a_detection():
    data_file = synthetic_file()
    scores = np.zeros(100)
    scores[40] = 0.7
    corpus = synthetic_corpus(data_file)
    assert score_corpus({data_file.name: scores}, corpus, threshold=0.7).raw_score == pytest.approx(1.0)
    assert score_corpus({data_file.name: scores}, corpus, threshold=0.7000001).raw_score == -1.0


def test_optimiser_breaks_ties_towards_the_highest_threshold():
    data_file = synthetic_file()
    scores = np.zeros(100)
    scores[40], scores[45] = 0.9, 0.8  # threshold 0.8 adds a detection that does not count
    result = score_corpus({data_file.name: scores}, synthetic_corpus(data_file))
    assert result.optimized
    assert result.threshold == 0.9
    assert result.raw_score == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_threshold_curve_agrees_with_plain_scoring_at_every_threshold(seed):
    """The vectorised sweep against `score_at_threshold`, the definition applied per threshold."""
    rng = np.random.default_rng(seed)
    files = [
        synthetic_file(300, ((60, 80), (150, 170), (171, 200)), "a/one.csv"),
        synthetic_file(120, ((5, 30), (90, 119)), "a/two.csv"),  # first window starts in probation
    ]
    scores = [np.round(rng.random(len(f)), 2) for f in files]  # rounding makes ties
    profile = PROFILES["reward_low_FN_rate"]
    sweeps = [sweep_file(f, profile) for f in files]
    curve = threshold_curve(scores, sweeps, profile)
    assert curve.thresholds[0] == 1.1
    assert np.all(np.diff(curve.thresholds) < 0)
    for j in range(len(curve)):
        plain = [score_at_threshold(s, w, profile, curve.thresholds[j]) for s, w in zip(scores, sweeps)]
        point = curve.point(j)
        assert point.score == pytest.approx(sum(p.score for p in plain), abs=1e-9)
        for count in ("tp", "tn", "fp", "fn"):
            assert getattr(point, count) == sum(getattr(p, count) for p in plain), count
        assert point.total == sum(int(w.scorable.sum()) for w in sweeps)
    best = curve.best()
    assert best.score == pytest.approx(max(curve.scores))
    assert curve.at(best.threshold).score == pytest.approx(best.score)


def test_normalisation_puts_null_at_0_and_perfect_at_100():
    assert normalized_score(-3.0, -3.0, 5.0) == 0.0
    assert normalized_score(5.0, -3.0, 5.0) == 100.0
    with pytest.raises(ValueError, match="no scorable anomaly window"):
        normalized_score(0.0, 0.0, 0.0)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_perfect_and_null_detectors_score_100_and_0_on_the_corpus(nab_dir, profile):
    corpus = _corpus(nab_dir)
    perfect, null = {}, {}
    for name, data_file in corpus.items():
        perfect[name] = detections(len(data_file), [start for start, _ in data_file.window_bounds])
        null[name] = np.zeros(len(data_file))
    assert score_corpus(perfect, corpus, profile, threshold=0.5).score == pytest.approx(100.0, abs=1e-9)
    assert score_corpus(null, corpus, profile).score == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_sweep_scores_match_nab_rows_of_artime(nab_dir, profile):
    """NAB v1.1's scorer writes each row's sweep score as S(t) (ARTime's files)."""
    corpus = _corpus(nab_dir)
    cost = corpus.profile(profile)
    for name, frame in _results(nab_dir, "ARTime").items():
        expected = frame[f"S(t)_{profile}"].to_numpy()
        np.testing.assert_allclose(sweep_file(corpus[name], cost).weights, expected, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian", "random"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_legacy_rows_match_nab_rows_at_fixed_thresholds(nab_dir, detector, profile):
    """NAB's earlier scorer wrote per-detection S(t) at the config/thresholds.json threshold."""
    corpus = _corpus(nab_dir)
    threshold = reference_thresholds(corpus, detector)[profile]
    for name, frame in _results(nab_dir, detector).items():
        got = legacy_row_scores(frame["anomaly_score"].to_numpy(), corpus[name], corpus.profile(profile), threshold)
        np.testing.assert_allclose(got, frame[f"S(t)_{profile}"].to_numpy(), rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("detector", REFERENCE_DETECTORS)
@pytest.mark.parametrize("optimized", [False, True], ids=["fixed", "optimized"])
def test_final_scores_match_nab(nab_dir, detector, optimized):
    corpus = _corpus(nab_dir)
    reference = load_reference_scores(nab_dir)["optimized_on_these_files" if optimized else "fixed_thresholds"]
    thresholds = None if optimized else reference_thresholds(corpus, detector)
    scores = score_all_profiles(_results(nab_dir, detector), corpus, detector, thresholds)
    got = {profile: round(result.score, 2) for profile, result in scores.items()}
    assert got == reference[detector]
    assert all(result.optimized == optimized for result in scores.values())


def test_score_results_dir_reads_nab_layout(nab_dir):
    corpus = _corpus(nab_dir)
    scores = score_results_dir(nab_dir / "results", corpus, "numenta", reference_thresholds(corpus, "numenta"))
    assert round(scores["standard"].score, 2) == 66.47
    per_file = scores["standard"].per_file
    assert list(per_file.index) == list(corpus)
    assert per_file["score"].sum() == pytest.approx(scores["standard"].raw_score)
    assert (per_file["total"] == [len(f) - f.probationary_length for f in corpus.values()]).all()


def test_bad_results_are_rejected():
    data_file = synthetic_file()
    corpus = synthetic_corpus(data_file)
    name = data_file.name
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        score_corpus({name: np.full(100, 1.5)}, corpus)
    with pytest.raises(ValueError, match="must be finite"):
        score_corpus({name: np.full(100, np.nan)}, corpus)
    with pytest.raises(ValueError, match="must have shape"):
        score_corpus({name: np.zeros(99)}, corpus)
    with pytest.raises(ValueError, match="missing"):
        score_corpus({}, corpus)
    with pytest.raises(ValueError, match="no anomaly_score column"):
        score_corpus({name: pd.DataFrame({"score": np.zeros(100)})}, corpus)
    with pytest.raises(ValueError, match="profile must be one of"):
        score_corpus({name: np.zeros(100)}, corpus, "strict")
