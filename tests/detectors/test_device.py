"""The detector trains on each device the suite can check (CPU always, CUDA where present; issue 10, item 16)."""
import numpy as np
import torch

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer

from .conftest import SMALL, synthetic_series


def test_detector_trains_on_the_device_and_scores_on_the_cpu(device):
    x, labels = synthetic_series(400)
    detector = SelectiveUpdateDetector(**{**SMALL, "n_steps": 8}, device=device.type, seed=2).fit(x)
    assert all(p.device.type == "cpu" for p in detector.model_.parameters())  # scoring runs on the CPU
    assert np.isfinite(detector.training_losses_).all() and len(detector.training_losses_) == 8
    scores = detector.decision_function(x)
    assert np.isfinite(scores).all()
    assert labels[np.argsort(scores)[-3:]].all()  # the spikes are the most surprising points
    stream = AnomalyLikelihood(StreamScorer(detector), learning_period=50, estimation_samples=50)
    assert np.isfinite(stream.process(x[:, None])).all()
    if device.type == "cpu":  # the same seed trains the same model on the CPU whatever the device argument
        again = SelectiveUpdateDetector(**{**SMALL, "n_steps": 8}, seed=2).fit(x)
        np.testing.assert_array_equal(again.decision_scores_, detector.decision_scores_)


def test_device_is_a_parameter(device):
    params = SelectiveUpdateDetector(device=device).get_params()
    assert params["device"] == device and torch.device(params["device"]).type == device.type
