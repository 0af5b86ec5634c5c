"""The online learner's fast path (core's per_sample_forward) against its vmap path."""
import copy

import numpy as np
import pytest
import torch

from sparsernn.detectors import SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.stream.online import OnlineLearner, OnlineLearning

from .conftest import SMALL


def float64_learner(model, settings, streams, fast, seed=0):
    """A learner of ``streams`` streams in float64 with filled windows and checkpoints (the same for any ``fast``)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        learner = OnlineLearner(copy.deepcopy(model).double(), settings, 1).grown(streams)
    finally:
        torch.set_default_dtype(default)
    learner.fast = fast
    gen = torch.Generator().manual_seed(seed)
    learner.ring_u.copy_(torch.randn(learner.ring_u.shape, generator=gen, dtype=torch.float64))
    learner.ring_ok.copy_(torch.rand(learner.ring_ok.shape, generator=gen) > 0.2)
    learner.checkpoint.copy_(torch.randn(learner.checkpoint.shape, generator=gen, dtype=torch.float64).tanh())
    return learner


@pytest.mark.parametrize("options", [{}, dict(density_hh=0.5, layer_options=dict(always_open_fraction=0.25)),
                                     dict(update_gate=None)])
def test_fast_and_vmap_paths_learn_the_same_weights(series, options):
    """Six Adam steps (all streams, then some) in float64: the same weights to float64 rounding."""
    model = SelectiveUpdateDetector(**SMALL, seed=3, **options).fit(series[0]).model_
    settings = OnlineLearning(learning_rate=3e-3, window=8, every=1)
    learners = {fast: float64_learner(model, settings, 5, fast) for fast in (True, False)}
    assert learners[True].ring_u.dtype == torch.float64
    for learner in learners.values():
        index = torch.arange(5)
        for step, due in enumerate([np.arange(5), np.arange(5), np.array([1, 3]), np.arange(5), np.array([4]),
                                    np.arange(5)]):
            learner._learn(learner.params, index, due, np.full(len(due), 8 + step))
    assert learners[True].adam_step.tolist() == learners[False].adam_step.tolist() == [4, 5, 4, 5, 5]
    for name, fast in learners[True].params.items():
        slow = learners[False].params[name]
        assert not torch.equal(fast, learners[True].initial[name].expand_as(fast)), name
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12, msg=name)


def test_the_default_detector_learns_on_the_fast_path_and_scores_as_the_vmap_path(fitted, series):
    """float32 end to end: two streams through process, fast path against the vmap path."""
    x = np.stack([series[0][:60], series[0][100:160]], 1)
    scorers = {fast: StreamScorer(fitted, learn=dict(learning_rate=3e-3, window=8, every=3)) for fast in (True, False)}
    scores = {}
    for fast, scorer in scorers.items():
        scorer.process(x[:1], ["a", "b"])
        assert scorer.learner.fast  # the detector's default layer (event-gated GRU) is covered
        scorer.learner.fast = fast
        scores[fast] = scorer.process(x[1:], ["a", "b"])
    np.testing.assert_allclose(scores[True], scores[False], rtol=1e-4, atol=1e-6)
    for name, value in scorers[True].learner.params.items():
        torch.testing.assert_close(value, scorers[False].learner.params[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [dict(cell="lstm"), dict(update_gate="rhythm"),
                                     dict(layer_options=dict(target_update_rate=0.5))])
def test_uncovered_layers_learn_on_the_vmap_path(series, options):
    model = SelectiveUpdateDetector(**SMALL, seed=3, **options).fit(series[0]).model_
    assert not OnlineLearner(model, OnlineLearning(), 1).fast
