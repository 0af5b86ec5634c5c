"""StreamScorer and AnomalyLikelihood: the river protocol, many streams, persistence, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL


def snapshot(stream) -> dict:
    """Every piece of per-stream state, copied."""
    scorer = stream.scorer if isinstance(stream, AnomalyLikelihood) else stream
    names = ("state", "forecast_mean", "forecast_var", "norm_mean", "norm_var", "count", "last_time")
    parts = {k: getattr(scorer, k).copy() for k in names}
    if isinstance(stream, AnomalyLikelihood):
        parts.update({f"lik_{k}": getattr(stream, k).copy() for k in stream.STATE})
    parts["ids"] = list(scorer.stream_ids)
    return parts


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("kind", ["scorer", "likelihood"])
def test_score_one_changes_nothing_and_learn_one_advances(fitted, series, kind):
    stream = StreamScorer(fitted) if kind == "scorer" else AnomalyLikelihood(StreamScorer(fitted))
    for v in series[0][:20]:
        stream.learn_one(v)
    before = snapshot(stream)
    first = stream.score_one(0.3)
    assert stream.score_one(0.3) == first
    assert_same_state(before, snapshot(stream))
    stream.learn_one(0.3)
    assert stream.scorer.count[0] == 21 if kind == "likelihood" else stream.count[0] == 21


def test_stream_with_fixed_scaling_reproduces_decision_function(fitted, series):
    x = series[0][:200]
    scorer = StreamScorer(fitted)
    one_by_one = []
    for v in x:
        one_by_one.append(scorer.score_one(v))
        scorer.learn_one(v)
    np.testing.assert_allclose(one_by_one, fitted.decision_function(x), rtol=1e-5, atol=1e-7)
    chunked = StreamScorer(fitted)
    parts = np.concatenate([chunked.score_then_learn(x[:70]), chunked.score_then_learn(x[70:71]), chunked.score_then_learn(x[71:])])
    np.testing.assert_allclose(parts, one_by_one, rtol=1e-5, atol=1e-7)


def test_many_streams_in_one_batch_equal_separate_streams(fitted, series):
    x = series[0][:120]
    block = np.stack([x, -x, 2 * x + 1], axis=1)  # (T, 3 streams)
    batched = StreamScorer(fitted, normalizer_halflife=50.0)
    first = batched.process(block[:60], ["a", "b", 7])
    second = batched.process(block[60:, [2, 0]], [7, "a"])  # a subset, in another order
    assert batched.stream_ids == ["a", "b", 7]
    got = {"a": np.r_[first[:, 0], second[:, 1]], "b": first[:, 1], 7: np.r_[first[:, 2], second[:, 0]]}
    for column, sid in enumerate(["a", "b", 7]):
        length = len(got[sid])
        alone = StreamScorer(fitted, normalizer_halflife=50.0).process(block[:length, column][:, None], [sid])
        np.testing.assert_allclose(got[sid], alone[:, 0], rtol=1e-5, atol=1e-7, err_msg=str(sid))
    singles = batched.score_many(np.array([0.1, 0.2]), streams=["b", "a"])
    assert singles.shape == (2,) and singles[0] == batched.score_one(0.1, stream="b")


@pytest.mark.parametrize("halflife", [None, 20.0])
@pytest.mark.parametrize("channels", [1, 2])
def test_one_point_path_equals_the_block_path_exactly(fitted, series, halflife, channels):
    """score_one / learn_one (scalar arithmetic for one channel) give the numbers of process(), bit for bit."""
    x = series[0][:80]
    if channels == 2:
        frame = pd.DataFrame({"a": x, "b": np.cos(np.arange(len(x)) / 5.0)})
        detector = SelectiveUpdateDetector(**{k: v for k, v in SMALL.items()}, seed=1).fit(frame)
        points = frame.to_numpy()
    else:
        detector, points = fitted, x
    one, block = StreamScorer(detector, normalizer_halflife=halflife), StreamScorer(detector, normalizer_halflife=halflife)
    scores = []
    for p in points:
        scores.append(one.score_one(p))
        one.learn_one(p)
    np.testing.assert_array_equal(scores, block.process(points[:, None])[:, 0])
    assert_same_state(snapshot(one), snapshot(block))


def test_online_normalizer_adapts_to_a_new_level(fitted, series):
    shifted = series[0][:400] * 10 + 500
    fixed = StreamScorer(fitted).score_then_learn(shifted)
    online = StreamScorer(fitted, normalizer_halflife=20.0).score_then_learn(shifted)
    assert np.median(online[200:]) < 0.1 * np.median(fixed[200:])


@pytest.mark.parametrize("kind", ["scorer", "likelihood"])
def test_save_load_continues_bit_identical(fitted, series, tmp_path, kind):
    x = series[0]

    def make():
        scorer = StreamScorer(fitted, normalizer_halflife=100.0)
        return scorer if kind == "scorer" else AnomalyLikelihood(scorer, learning_period=50, estimation_samples=50)

    block = np.stack([x, x[::-1]], axis=1)
    stream = make()
    stream.process(block[:250], ["s1", "s2"])
    stream.learn_one(0.5, timestamp="2024-01-01", stream="s3")
    stream.save(tmp_path / "stream.pt")
    expected = stream.process(block[250:], ["s1", "s2"])
    loaded = type(stream).load(tmp_path / "stream.pt")
    np.testing.assert_array_equal(loaded.process(block[250:], ["s1", "s2"]), expected)
    assert loaded.stream_ids == ["s1", "s2", "s3"]
    with pytest.raises(ValueError, match="strictly increase"):
        loaded.learn_one(0.1, timestamp="2023-12-31", stream="s3")
    loaded_bytes = (tmp_path / "stream.pt").read_bytes()
    assert b"__reduce__" not in loaded_bytes  # tensors and plain containers only
    torch.load(tmp_path / "stream.pt", weights_only=True)


@pytest.mark.parametrize("bad, error, match", [
    (float("nan"), ValueError, "finite"), (float("inf"), ValueError, "finite"), ([1.0, 2.0], ValueError, "channel"),
    ("x", TypeError, "numbers"), (np.zeros((2, 2)), ValueError, "channel"),
])
def test_rejected_point_leaves_the_stream_unchanged(fitted, series, bad, error, match):
    stream = AnomalyLikelihood(StreamScorer(fitted, normalizer_halflife=30.0))
    for t, v in enumerate(series[0][:30]):
        stream.learn_one(v, timestamp=pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=t))
    before = snapshot(stream)
    with pytest.raises(error, match=match):
        stream.learn_one(bad)
    with pytest.raises(error, match=match):
        stream.score_one(bad)
    assert_same_state(before, snapshot(stream))


def test_bad_timestamps_and_chunks_are_rejected_without_change(fitted, series):
    stream = StreamScorer(fitted)
    index = pd.date_range("2024-01-01", periods=40, freq="min")
    stream.score_then_learn(pd.Series(series[0][:40], index=index))
    before = snapshot(stream)
    with pytest.raises(ValueError, match="strictly increase"):
        stream.learn_one(1.0, timestamp=index[-1])  # duplicate
    with pytest.raises(ValueError, match="strictly increase"):
        stream.score_then_learn(pd.Series([1.0, 2.0], index=[index[0] - pd.Timedelta("1D"), index[0]]))  # goes back
    with pytest.raises(ValueError, match="unsorted"):
        stream.score_then_learn(pd.Series([1.0, 2.0], index=pd.to_datetime(["2025-01-02", "2025-01-01"])))
    with pytest.raises(ValueError, match="channel"):
        stream.score_then_learn(pd.DataFrame({"a": [1.0], "b": [2.0]}, index=pd.to_datetime(["2025-01-01"])))
    with pytest.raises(ValueError, match="at least"):
        stream.score_then_learn(np.zeros(0))
    with pytest.raises(ValueError, match="repeat"):
        stream.process(np.zeros((3, 2)), [0, 0])
    with pytest.raises(ValueError, match="finite"):
        stream.process(np.array([[1.0, 2.0], [np.nan, 1.0]]), [0, "new"])
    assert_same_state(before, snapshot(stream))


def test_likelihood_scores_are_in_unit_interval_and_alarm_on_spikes(fitted, series):
    x, labels = series
    stream = AnomalyLikelihood(StreamScorer(fitted), learning_period=50, estimation_samples=50,
                               averaging_window=1, alarm_threshold=0.5)  # NAB averages 10: one-point spikes dilute
    frame = stream.score_then_learn(pd.Series(x, index=pd.date_range("2024-01-01", periods=len(x), freq="h")))
    assert list(frame.columns) == ["surprise", "score", "alarm"]
    assert frame["score"].between(0, 1).all()
    alarms = frame["alarm"].to_numpy()
    spikes = np.flatnonzero(np.diff(np.r_[0, labels]) == 1)
    assert alarms[spikes].all()  # every spike raises an alarm at once
    assert alarms.mean() < 0.1
    assert stream.classify(0.7) and not stream.classify(0.2)


def test_nab_adapter_is_causal_and_in_unit_interval(series):
    x = series[0][:300]
    nab = SelectiveUpdateNAB(seed=0, **{k: v for k, v in SMALL.items() if k != "progress"})
    stamps = pd.date_range("2024-01-01", periods=len(x), freq="h")
    scores = nab.run(x, probationary=100, timestamps=stamps)
    assert scores.shape == x.shape and (scores >= 0).all() and (scores <= 1).all()
    changed = x.copy()
    changed[200:] += 3.0
    np.testing.assert_array_equal(nab.run(changed, probationary=100, timestamps=stamps)[:200], scores[:200])
    with pytest.raises(ValueError, match="timestamps"):
        nab.run(x, probationary=100)  # the seasonal period needs them (or seasonal_period=, seasonal=False)
    np.testing.assert_array_equal(SelectiveUpdateNAB(seed=0, seasonal_period=24, **{
        k: v for k, v in SMALL.items() if k != "progress"}).run(x, probationary=100), scores)
