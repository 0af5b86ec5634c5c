"""VUS-PR and AUC-PR: known answers from the reference implementation, and input checks."""
import numpy as np
import pytest

from sparsernn.detectors.metrics import anomaly_ranges, auc_pr, vus_pr


def synthetic_case(seed, n, ranges, round_to=None):
    """Labels with the given anomaly ranges and noisy scores that are higher inside them."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int)
    for start, end in ranges:
        labels[start : end + 1] = 1
    scores = rng.random(n) + 0.8 * labels * rng.random(n)
    if round_to is not None:
        scores = np.round(scores, round_to)  # creates ties
    return labels, scores


# (case, sliding_window, n_thresholds, VUS-PR, AUC-PR) computed with TSB-AD 1.5's own code:
#
#   pip download --no-deps TSB-AD==1.5 && unzip TSB_AD-1.5-py3-none-any.whl
#   # basic_metrics.py needs only numpy and scikit-learn, so load it on its own:
#   spec = importlib.util.spec_from_file_location("bm", "TSB_AD/evaluation/basic_metrics.py")
#   bm = importlib.util.module_from_spec(spec); spec.loader.exec_module(bm)
#   labels, scores = synthetic_case(**case)
#   vus = bm.generate_curve(labels, scores, sliding_window, "opt", n_thresholds)[-1]
#   auc = bm.basic_metricor().metric_PR(labels, scores)
#
# (the vus package 0.0.6, metrics.get_metrics(..., metric="vus"), runs the same
# RangeAUC_volume_opt code.)
KNOWN_ANSWERS = [
    (dict(seed=0, n=500, ranges=[(100, 130), (300, 310)]), 20, 250, 0.5240037563617582, 0.480263876364876),
    (dict(seed=1, n=300, ranges=[(0, 9), (290, 299)], round_to=1), 10, 250, 0.4674115141637898, 0.45061492953849147),
    (dict(seed=2, n=1000, ranges=[(200, 260), (270, 280), (700, 750)]), 100, 250, 0.558326472977346, 0.4820933259529843),
    (dict(seed=3, n=200, ranges=[(50, 50), (120, 140)]), 7, 50, 0.4617085504036412, 0.5093842806057185),
    (dict(seed=4, n=400, ranges=[(10, 30)]), 0, 250, 0.6196509402311327, 0.6238099075288907),
]


@pytest.mark.parametrize("case, window, n_thresholds, expected_vus, expected_auc", KNOWN_ANSWERS)
def test_vus_pr_matches_tsb_ad(case, window, n_thresholds, expected_vus, expected_auc):
    labels, scores = synthetic_case(**case)
    assert vus_pr(labels, scores, sliding_window=window, n_thresholds=n_thresholds) == pytest.approx(
        expected_vus, abs=1e-12
    )
    assert auc_pr(labels, scores) == pytest.approx(expected_auc, abs=1e-12)


@pytest.mark.parametrize("window, expected", [(0, 0.22404067497632785), (6, 0.2469040015182417), (30, 0.34978882243351245)])
def test_vus_pr_matches_tsb_ad_when_detections_sit_on_range_ends(window, expected):
    """Same TSB-AD code as above; the only hits are the last row of each range and a near miss."""
    rng = np.random.default_rng(5)
    labels = np.zeros(300, dtype=int)
    labels[50:60] = 1
    labels[290:300] = 1
    scores = 0.1 * rng.random(300)
    scores[59], scores[299], scores[62] = 1.0, 0.9, 0.95
    assert vus_pr(labels, scores, sliding_window=window) == pytest.approx(expected, abs=1e-12)


def test_auc_pr_known_answer():
    """scikit-learn's documented average-precision example."""
    assert auc_pr([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8333333333333333)


def test_perfect_scores_reach_one_and_borders_reward_near_misses():
    labels = np.zeros(200, dtype=int)
    labels[80:100] = 1
    assert vus_pr(labels, labels.astype(float), sliding_window=0) == pytest.approx(1.0)
    late = np.zeros(200)
    late[100:104] = 1.0  # just after the range: no point-wise credit, some range-aware credit
    assert vus_pr(labels, late, sliding_window=0) < vus_pr(labels, late, sliding_window=20)


def test_anomaly_ranges():
    ranges = anomaly_ranges(np.array([1, 1, 0, 0, 1, 0, 1]))
    assert ranges.tolist() == [[0, 1], [4, 4], [6, 6]]


@pytest.mark.parametrize("metric", [vus_pr, auc_pr])
def test_inputs_are_checked(metric):
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="same length"):
        metric(labels, np.zeros(3))
    with pytest.raises(ValueError, match="must be finite"):
        metric(labels, np.array([0.1, np.nan, 0.2, 0.3]))
    with pytest.raises(ValueError, match="labels are all 0"):
        metric(np.zeros(4), np.arange(4.0))
    with pytest.raises(ValueError, match="labels are all 1"):
        metric(np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        metric(np.array([0, 2, 0, 1]), np.arange(4.0))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        metric(np.array([0, np.nan, 0, 1]), np.arange(4.0))
    with pytest.raises(ValueError, match="1-D"):
        metric(labels.reshape(2, 2), np.arange(4.0).reshape(2, 2))


def test_vus_parameters_are_checked():
    labels, scores = np.array([0, 1, 0, 1]), np.arange(4.0)
    with pytest.raises(ValueError, match="sliding_window"):
        vus_pr(labels, scores, sliding_window=-1)
    with pytest.raises(ValueError, match="n_thresholds"):
        vus_pr(labels, scores, n_thresholds=0)
