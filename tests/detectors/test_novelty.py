"""WindowNovelty: nearest-neighbour distance of the recent window, its own likelihood, max with the wrapped score."""
import numpy as np
import pytest

from sparsernn.detectors import AnomalyLikelihood, SpatialAnomaly, StreamScorer, WindowNovelty
from sparsernn.detectors.nab import SelectiveUpdateNAB
from sparsernn.detectors.stream.likelihood import likelihood_scores

from .conftest import SMALL, blocks_and_points

LIKELIHOOD = dict(learning_period=40, estimation_samples=40)


def reference_novelty(u: np.ndarray, block: int, window: int, memory: int, exclude: int) -> np.ndarray:
    """The definition, plainly, for one channel of scaled values ``u`` (n,); embeddings are rounded to float32."""
    span, out, bank = block * window, np.zeros(len(u)), []  # bank: (row, embedding), oldest first
    for t in range(len(u)):
        if t + 1 < span:
            continue
        embedding = u[t + 1 - span: t + 1].reshape(window, block).mean(1).astype(np.float32).astype(float)
        distances = [np.sqrt(np.mean((e - embedding) ** 2)) for row, e in bank[-memory:] if row <= t - exclude]
        out[t] = min(distances) if distances else 0.0
        if (t + 1) % block == 0:
            bank.append((t, embedding))
    return out


def make(fitted, **kwargs):
    settings = dict(block=3, window=4, memory=50, **LIKELIHOOD)
    settings.update(kwargs)
    return WindowNovelty(AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD), **settings)


def test_matches_the_definition(fitted, series):
    x = series[0][:300]
    u = (x - fitted.center_[0]) / fitted.scale_[0]
    expected = reference_novelty(u, block=3, window=4, memory=50, exclude=12)
    got = make(fitted)
    got._rows([0])
    np.testing.assert_allclose(got._novelty(x[:, None, None], np.array([0]), learn=True)[:, 0], expected,
                               rtol=1e-12, atol=1e-12)
    inner = AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD).process(x[:, None])[:, 0]
    scores = make(fitted).process(x[:, None])[:, 0]
    np.testing.assert_allclose(scores, np.maximum(inner, likelihood_scores(expected, **LIKELIHOOD)),
                               rtol=1e-12, atol=1e-12)


def test_a_repeating_series_is_not_novel_until_its_pattern_changes(fitted):
    period = 24
    x = np.tile(np.sin(2 * np.pi * np.arange(period) / period), 20)
    changed = x.copy()
    changed[300:310] = 0.3  # a flat stretch where a peak should be: a window never seen
    stream, clean = make(fitted, block=1, window=6), make(fitted, block=1, window=6)  # every window stored
    novelty = stream._novelty(changed[:, None, None], np.array(stream._rows([0])), learn=True)[:, 0]
    baseline = clean._novelty(x[:, None, None], np.array(clean._rows([0])), learn=True)[:, 0]
    assert np.abs(baseline[2 * period:]).max() < 1e-9  # after one period every window has been seen
    np.testing.assert_array_equal(novelty[:300], baseline[:300])  # causal
    assert novelty[300:320].max() > 0.3


def test_block_equals_point_by_point_and_is_causal(fitted, series):
    x = series[0][:260]
    blocks, singles = blocks_and_points(lambda: make(fitted), x)
    np.testing.assert_allclose(blocks, singles, rtol=1e-12, atol=1e-12)
    changed = x.copy()
    changed[200:] += 3.0
    future = make(fitted).process(changed[:, None])[:, 0]
    np.testing.assert_array_equal(future[:200], blocks[:200])


def test_streams_are_independent_and_rows_need_not_be_contiguous(fitted, series):
    x = np.stack([series[0][:150], series[0][:150][::-1] * 2, series[0][:150] + 1], axis=1)
    together = make(fitted)
    together._rows(["c"])  # stream "c" takes row 0, so "a" and "b" are rows 1, 2 and "b", "a" is not contiguous
    both = np.concatenate([together.process(part[:, [1, 0]], streams=["b", "a"]) for part in np.array_split(x, 4)])
    for column, name in ((1, "b"), (0, "a")):
        alone = make(fitted).process(x[:, [column]], streams=[name])[:, 0]
        np.testing.assert_array_equal(both[:, 0 if name == "b" else 1], alone)


def test_save_load_continues_bit_identically(fitted, series, tmp_path):
    x = np.stack([series[0][:240], series[0][:240] * 1.5, -series[0][:240]], axis=1)
    names = ["a", 7, "c"]
    stream = SpatialAnomaly(make(fitted))
    stream.process(x[:160], streams=names)
    stream.save(tmp_path / "s.pt")
    loaded = SpatialAnomaly.load(tmp_path / "s.pt")
    assert isinstance(loaded.stream, WindowNovelty)
    for name in WindowNovelty.STATE:
        np.testing.assert_array_equal(getattr(loaded.stream, name), getattr(stream.stream, name))
    np.testing.assert_array_equal(loaded.process(x[160:200], streams=names), stream.process(x[160:200], streams=names))
    for value in x[200:, 1]:
        assert loaded.score_one(value, stream=7) == stream.score_one(value, stream=7)
        loaded.learn_one(value, stream=7)
        stream.learn_one(value, stream=7)


def test_rejected_input_leaves_the_state_unchanged(fitted, series):
    stream = make(fitted)
    stream.process(series[0][:60, None])
    before = {name: np.array(getattr(stream, name), copy=True) for name in WindowNovelty.STATE}
    with pytest.raises(ValueError):
        stream.process(np.array([[1.0], [np.nan]]))
    with pytest.raises((ValueError, TypeError)):
        stream.learn_one("high")
    for name, array in before.items():
        np.testing.assert_array_equal(getattr(stream, name), array)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(block=0), ValueError, "block"), (dict(block=2.5), TypeError, "block"),
    (dict(window=0), ValueError, "window"), (dict(memory=True), TypeError, "memory"),
    (dict(exclude=0), ValueError, "exclude"), (dict(learning_period=-1), ValueError, "learning_period"),
    (dict(inner_weight=1.5), ValueError, "inner_weight"), (dict(inner_weight=-0.1), ValueError, "inner_weight"),
    (dict(inner_weight=float("nan")), ValueError, "inner_weight"), (dict(inner_weight=True), TypeError, "inner_weight"),
    (dict(inner_weight="0.5"), TypeError, "inner_weight")])
def test_bad_settings_are_rejected(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(fitted, **kwargs)


def test_inner_weight_scales_the_wrapped_score_before_the_maximum(fitted, series, tmp_path):
    x = series[0][:300]
    inner = AnomalyLikelihood(StreamScorer(fitted), **LIKELIHOOD).process(x[:, None])[:, 0]
    full, weighted = make(fitted).process(x[:, None])[:, 0], make(fitted, inner_weight=0.5)
    got = weighted.process(x[:, None])[:, 0]
    novelty = make(fitted, inner_weight=0.0).process(x[:, None])[:, 0]  # the novelty's likelihood alone
    np.testing.assert_allclose(full, np.maximum(inner, novelty), rtol=0, atol=0)
    np.testing.assert_allclose(got, np.maximum(0.5 * inner, novelty), rtol=0, atol=0)
    assert (got < full).any()
    weighted.save(tmp_path / "w.pt")
    assert WindowNovelty.load(tmp_path / "w.pt").inner_weight == 0.5


def test_nab_adapter_passes_surprise_weight_to_the_novelty(series):
    x = series[0][:300]
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    assert SelectiveUpdateNAB().surprise_weight == 0.8
    chain = SelectiveUpdateNAB(seed=0, surprise_weight=0.3, seasonal_period=24, **params).pipeline(x, 100)
    assert isinstance(chain.stream, WindowNovelty) and chain.stream.inner_weight == 0.3
    one = SelectiveUpdateNAB(seed=0, surprise_weight=1.0, seasonal_period=24, **params).run(x, probationary=100)
    low = SelectiveUpdateNAB(seed=0, surprise_weight=0.5, seasonal_period=24, **params).run(x, probationary=100)
    assert (low <= one).all()
    for bad, error in ((1.2, ValueError), (-1, ValueError), (None, TypeError), (False, TypeError)):
        with pytest.raises(error, match="surprise_weight"):
            SelectiveUpdateNAB(surprise_weight=bad)
