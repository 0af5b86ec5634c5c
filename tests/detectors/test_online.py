"""Online learning of the forecaster while streaming (``StreamScorer(learn=...)``) and ``partial_fit``."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.stream.online import OnlineLearner, OnlineLearning

from .conftest import SMALL

LEARN = dict(learning_rate=3e-3, window=8, every=3)


def stream_points(scorer, x: np.ndarray, stream=0) -> np.ndarray:
    """Scores of ``x`` (n,) fed point by point: ``score_one`` (checked to change nothing), then ``learn_one``."""
    scores = []
    for value in x:
        before = scorer.state_arrays()
        score = scorer.score_one(float(value), stream=stream)
        after = scorer.state_arrays()
        assert all(np.array_equal(before[k], after[k]) for k in before)
        scores.append(score)
        scorer.learn_one(float(value), stream=stream)
    return np.array(scores)


def gaussian_nll_along(scorer, x: np.ndarray) -> np.ndarray:
    """Per point, the Gaussian NLL (less its constant) of ``x`` under the scorer's forecast, streaming with learning."""
    nll = []
    for value in x:
        var = float(scorer.forecast_var[0, 0]) if len(scorer.stream_ids) else 1.0
        nll.append(scorer.score_one(float(value)) + 0.5 * np.log(var))
        scorer.learn_one(float(value))
    return np.array(nll)


def weights(scorer) -> dict:
    return {k: v.clone() for k, v in scorer.learner.params.items()}


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs, error, words", [
    (dict(learning_rate=0.0), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (dict(learning_rate="1e-3"), TypeError, "learning_rate"),
    (dict(window=1), ValueError, "window"),
    (dict(window=8.0), TypeError, "window"),
    (dict(every=0), ValueError, "every"),
    (dict(every=True), TypeError, "every"),
    (dict(skip_anomalous_above=-1.0), ValueError, "skip_anomalous_above"),
    (dict(max_grad_norm=0), ValueError, "max_grad_norm"),
])
def test_settings_are_checked(fitted, kwargs, error, words):
    with pytest.raises(error, match=words):
        OnlineLearning(**kwargs)
    with pytest.raises(error, match=words):
        StreamScorer(fitted, learn=kwargs)


def test_learn_argument_kinds(fitted):
    assert StreamScorer(fitted).learner is None and StreamScorer(fitted, learn=False).learner is None
    assert StreamScorer(fitted, learn=True).learn == OnlineLearning()
    assert StreamScorer(fitted, learn={"every": 4}).learn == OnlineLearning(every=4)
    with pytest.raises(ValueError, match=r"unknown settings \['lr'\]"):
        StreamScorer(fitted, learn={"lr": 1e-3})
    with pytest.raises(TypeError, match="learn must be"):
        StreamScorer(fitted, learn="adam")
    routed = SimpleNamespace(layer=SimpleNamespace(router_keep=(0.5, 0.5)))
    with pytest.raises(ValueError, match="routed layer"):
        OnlineLearner(routed, OnlineLearning(), 1)


def test_rejected_call_changes_nothing(fitted, series):
    scorer = StreamScorer(fitted, learn=LEARN)
    scorer.process(series[0][:40, None, None][:, :, 0], ["a"])
    before = scorer.state_arrays()
    for bad in (lambda: scorer.learn_one(float("nan"), stream="a"),
                lambda: scorer.process(np.zeros((3, 2)), ["a", "a"]),
                lambda: scorer.learn_many([1.0, np.inf], ["a", "b"])):
        with pytest.raises((ValueError, TypeError)):
            bad()
    after = scorer.state_arrays()
    assert before.keys() == after.keys() and scorer.stream_ids == ["a"]
    assert all(np.array_equal(before[k], after[k]) for k in before)
    scorer.score_one(0.5, stream="new")  # scoring an unknown stream registers nothing, learns nothing
    assert scorer.stream_ids == ["a"] and all(np.array_equal(before[k], scorer.state_arrays()[k]) for k in before)


def test_an_extreme_outlier_leaves_the_learned_weights_finite(fitted, series):
    x = series[0][:80].copy()
    x[40] = 1e30                                        # clipped to 100 robust units before the model sees it
    scorer = StreamScorer(fitted, learn=dict(LEARN, learning_rate=1e-1))
    scores = scorer.process(x[:, None])[:, 0]
    assert np.isfinite(scores).all() and scores[40] > 100 * scores[30:40].max()
    assert all(torch.isfinite(p).all() for p in scorer.learner.params.values())
    assert int(scorer.learner.adam_step[0]) == (80 - 9) // 3 + 1


def test_a_stream_whose_gradient_is_not_finite_keeps_its_weights(fitted, series, monkeypatch):
    scorer = StreamScorer(fitted, learn=dict(LEARN, every=1))
    x = np.stack([series[0][:8], series[0][8:16]], 1)
    scorer.process(x, ["a", "b"])                        # 8 points each: one step each so far (count 8)
    before = weights(scorer)
    gradients = scorer.learner._gradients

    def poisoned(*args):
        grads, losses = gradients(*args)
        grads = {k: g.clone() for k, g in grads.items()}
        grads["head.bias"][1] = float("nan")             # stream "b"
        return grads, losses

    monkeypatch.setattr(scorer.learner, "_gradients", poisoned)
    scorer.process(x[:1], ["a", "b"])
    after = weights(scorer)
    assert scorer.learner.adam_step.tolist() == [2, 1]
    assert all(torch.equal(before[k][1], after[k][1]) for k in before)
    assert not all(torch.equal(before[k][0], after[k][0]) for k in before)


# ---------------------------------------------------------------- causality, determinism
def test_score_is_computed_before_learning(fitted, series):
    """The score of the point a stream learns from first is the same whether or not it learns from it."""
    x = series[0][:30]
    learns = StreamScorer(fitted, learn=dict(LEARN, every=4))   # learns after counts 8, 12, ...
    never = StreamScorer(fitted, learn=dict(LEARN, every=10 ** 6))
    a, b = learns.process(x[:, None])[:, 0], never.process(x[:, None])[:, 0]
    assert learns.learner.adam_step.tolist() == [6] and never.learner.adam_step.tolist() == [0]
    np.testing.assert_array_equal(a[:8], b[:8])  # point 7 (count 8) is learned from after its score
    assert not np.array_equal(a[8:], b[8:])


def test_blocks_equal_points_and_changed_future_leaves_past(fitted, series):
    x = series[0][:60]
    points = stream_points(StreamScorer(fitted, learn=LEARN), x)
    blocks = StreamScorer(fitted, learn=LEARN)
    in_blocks = np.concatenate([blocks.process(part[:, None])[:, 0] for part in np.array_split(x, 7)])
    np.testing.assert_array_equal(points, in_blocks)
    future = x.copy()
    future[41:] += 3.0
    changed = StreamScorer(fitted, learn=LEARN).process(future[:, None])[:, 0]
    np.testing.assert_array_equal(changed[:41], points[:41])
    assert changed[41] != points[41]


def test_two_runs_are_bit_identical(series):
    x = np.stack([series[0][:80], -series[0][:80]], 1)
    runs = []
    for _ in range(2):
        det = SelectiveUpdateDetector(**SMALL, seed=7).fit(series[0][:200])
        scorer = StreamScorer(det, learn=dict(LEARN, skip_anomalous_above=4.0))
        runs.append((scorer.process(x, ["a", "b"]), weights(scorer)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_streams_learn_their_own_weights(fitted, series):
    """Per-stream models: a stream's weights and scores do not depend on the other streams of its block."""
    x = np.stack([series[0][:50], 0.3 * series[0][:50] + 1.0, -series[0][:50]], 1)
    together = StreamScorer(fitted, learn=LEARN)
    scores = together.process(x, ["a", "b", "c"])
    alone = StreamScorer(fitted, learn=LEARN)
    single = alone.process(x[:, 1:2], ["b"])
    np.testing.assert_allclose(scores[:, 1], single[:, 0], rtol=1e-5, atol=1e-6)
    for name, stacked in together.learner.params.items():
        torch.testing.assert_close(stacked[1], alone.learner.params[name][0], rtol=1e-5, atol=1e-6)
        assert not torch.equal(stacked[0], stacked[2]) or name.endswith("gate.weight_h"), name


def test_windows_keep_the_last_points_and_the_states_that_entered_them(fitted, series):
    """A window ending at count e starts from the state the stream had at count e - window (a checkpoint)."""
    x = series[0][:30]
    scorer = StreamScorer(fitted, learn=LEARN)          # window 8, every 3: 3 checkpoint slots
    states = [np.zeros(scorer.model.layer.state_size, dtype=np.float32)]
    for value in x:
        scorer.learn_one(float(value))
        states.append(scorer.state[0].copy())
    learner = scorer.learner
    assert learner.slots == 3
    for n in (22, 25, 28):                              # (n + 8) % 3 == 0: the checkpoints still needed
        np.testing.assert_array_equal(learner.checkpoint[0, (n // 3) % 3].numpy(), states[n], err_msg=str(n))
    u = np.clip((x - fitted.center_[0]) / fitted.scale_[0], -100, 100).astype(np.float32)
    np.testing.assert_array_equal(learner.ring_u[0, np.arange(22, 30) % 8, 0].numpy(), u[22:30])


def test_streams_at_different_counts_learn_on_their_own_schedule(fitted, series):
    """A block whose streams are at different counts (learning points and checkpoints at different rows)
    gives each stream what it gets alone, point by point."""
    x = series[0][:60]
    mixed = StreamScorer(fitted, learn=LEARN)
    head = mixed.process(x[:5, None], ["a"])[:, 0]
    both = mixed.process(np.stack([x[5:50], 2.0 * x[:45]], 1), ["a", "b"])
    alone_a = stream_points(StreamScorer(fitted, learn=LEARN), x[:50])
    alone_b = stream_points(StreamScorer(fitted, learn=LEARN), 2.0 * x[:45])
    np.testing.assert_allclose(np.concatenate([head, both[:, 0]]), alone_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[:, 1], alone_b, rtol=1e-5, atol=1e-6)
    assert mixed.learner.adam_step.tolist() == [(50 - 9) // 3 + 1, (45 - 9) // 3 + 1]


# ---------------------------------------------------------------- persistence
def test_resumed_stream_continues_bit_identically(fitted, series, tmp_path):
    x = np.stack([series[0][:120], series[0][40:160], 2.0 * series[0][:120]], 1)[:, :, None]
    ids = ["a", 7, "c"]

    def make():
        return AnomalyLikelihood(StreamScorer(fitted, normalizer_halflife=50.0,
                                              learn=dict(LEARN, skip_anomalous_above=3.0)),
                                 learning_period=20, estimation_samples=20)

    whole = make()
    expected = whole.process(x, ids)
    first = make()
    head = first.process(x[:71], ids)
    first.save(tmp_path / "s.pt")
    loaded = AnomalyLikelihood.load(tmp_path / "s.pt")
    assert loaded.inner.learn == first.inner.learn
    saved, restored = first.inner.state_arrays(), loaded.inner.state_arrays()
    assert saved.keys() == restored.keys() and any(k.startswith("learn.adam_m.") for k in saved)
    assert all(np.array_equal(saved[k], restored[k]) and saved[k].dtype == restored[k].dtype for k in saved)
    tail = loaded.process(x[71:], ids)
    np.testing.assert_array_equal(np.concatenate([head, tail]), expected)
    assert torch.load(tmp_path / "s.pt", weights_only=True)["version"] == 4
    StreamScorer(fitted).save(tmp_path / "plain.pt")
    assert torch.load(tmp_path / "plain.pt", weights_only=True)["version"] == 3


# ---------------------------------------------------------------- it learns
def test_learning_changes_weights_and_lowers_the_nll_of_a_repeated_pattern():
    rng = np.random.default_rng(0)
    pattern = np.repeat(rng.standard_normal(6), 3)      # 18 points, repeated
    x = np.tile(pattern, 40)
    det = SelectiveUpdateDetector(**dict(SMALL, n_steps=2), seed=0).fit(x[:100])
    frozen = gaussian_nll_along(StreamScorer(det), x)
    scorer = StreamScorer(det, learn=dict(learning_rate=1e-2, window=18, every=6))
    learned = gaussian_nll_along(scorer, x)
    moved = [name for name, p in scorer.learner.params.items() if not torch.equal(p[0], scorer.learner.initial[name])]
    assert "head.weight" in moved and "layer.weight_hh" in moved
    late = slice(len(x) - 10 * 18, None)
    assert learned[late].mean() < frozen[late].mean() - 0.5, (learned[late].mean(), frozen[late].mean())


def test_skip_anomalous_above_leaves_out_points(fitted, series):
    """Only the warm-up points (score 0.0) are at or below 1e-30: the one window whose targets reach them
    (count 9: points 1..8) takes a step; the next 8 learning points (counts 12, ..., 33) find nothing to learn."""
    x = series[0][:35, None] + 5.0
    skip = StreamScorer(fitted, learn=dict(LEARN, skip_anomalous_above=1e-30))
    scores = skip.process(x)[:, 0]
    assert (scores[:SMALL["warmup"]] == 0).all() and (scores[SMALL["warmup"]:] > 1e-30).all()
    assert skip.learner.adam_step.tolist() == [1]
    every_point = StreamScorer(fitted, learn=LEARN)
    every_point.process(x)
    assert every_point.learner.adam_step.tolist() == [9]


# ---------------------------------------------------------------- partial_fit
def test_partial_fit_continues_training(series):
    x = series[0]
    det = SelectiveUpdateDetector(**SMALL, seed=1).fit(x[:200])
    before = {k: v.clone() for k, v in det.model_.state_dict().items()}
    assert det.partial_fit(x[200:400]) is det
    assert len(det.training_losses_) == 2 * SMALL["n_steps"] and len(det.decision_scores_) == 200
    assert any(not torch.equal(before[k], v) for k, v in det.model_.state_dict().items())
    twin = SelectiveUpdateDetector(**SMALL, seed=1).fit(x[:200]).partial_fit(x[200:400])
    np.testing.assert_array_equal(twin.decision_function(x), det.decision_function(x))
    fresh = SelectiveUpdateDetector(**SMALL, seed=1).partial_fit(x[:200])  # not fitted: fit
    np.testing.assert_array_equal(fresh.decision_scores_, SelectiveUpdateDetector(**SMALL, seed=1)
                                  .fit(x[:200]).decision_scores_)


def test_partial_fit_checks_input_like_fit(series):
    det = SelectiveUpdateDetector(**SMALL, seed=1).fit(series[0][:200])
    state = {k: v.clone() for k, v in det.model_.state_dict().items()}
    for bad, error in ((np.zeros((50, 2)), ValueError), (np.array([1.0, np.nan, 2.0]), ValueError),
                       (np.array([1.0]), ValueError), (np.array(["a", "b"]), (TypeError, ValueError))):
        with pytest.raises(error):
            det.partial_fit(bad)
    assert all(torch.equal(state[k], v) for k, v in det.model_.state_dict().items())


def test_nab_chain_passes_learning_through(series):
    from sparsernn.detectors.nab import SelectiveUpdateNAB

    with pytest.raises(ValueError, match="every"):
        SelectiveUpdateNAB(learn={"every": 0})
    with pytest.raises(TypeError, match="learn must be"):
        SelectiveUpdateNAB(learn=True)
    settings = dict(seasonal=False, novelty=False, **{k: v for k, v in SMALL.items() if k != "progress"})
    chain = SelectiveUpdateNAB(learn={"every": 8, "window": 16}, **settings)
    stream = chain.pipeline(series[0][:300], 100)
    assert stream._scorer.learn == OnlineLearning(every=8, window=16)
    learned = chain.run(series[0][:300], 100)
    frozen = SelectiveUpdateNAB(**settings).run(series[0][:300], 100)
    assert learned.shape == (300,) and not np.array_equal(learned, frozen)
