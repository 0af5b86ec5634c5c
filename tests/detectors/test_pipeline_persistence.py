"""The whole streaming chain saves and loads (arrays + JSON): a restarted process continues bit-identically."""
import numpy as np
import pandas as pd
import pytest
import torch

from sparsernn.detectors import (AnomalyLikelihood, PeakSuppression, SeasonalSurprise, SpatialAnomaly, StreamScorer,
                                 WindowNovelty, load_stream)
from sparsernn.detectors.nab import SelectiveUpdateNAB
from sparsernn.detectors.stream.wrappers import ScoreTransform

from .conftest import SMALL


def nab_chain(x):
    """SpatialAnomaly(PeakSuppression(WindowNovelty(AnomalyLikelihood(SeasonalSurprise(StreamScorer))))),
    fitted on x[:100]."""
    nab = SelectiveUpdateNAB(seed=0, suppression=0.5, **{k: v for k, v in SMALL.items() if k != "progress"})
    stamps = pd.date_range("2024-01-01", periods=len(x), freq="h")
    return nab.pipeline(x, probationary=100, timestamps=stamps)


def test_the_nab_chain_continues_bit_identically_after_save_and_load(series, tmp_path):
    x = series[0]
    block = np.stack([x, x[::-1] * 1.5 + 1.0], axis=1)
    stream = nab_chain(x)
    chain = [stream]
    while hasattr(chain[-1], "inner"):
        chain.append(chain[-1].inner)
    assert [type(w).__name__ for w in chain] == ["SpatialAnomaly", "PeakSuppression", "WindowNovelty",
                                                 "AnomalyLikelihood", "SeasonalSurprise", "StreamScorer"]
    uninterrupted = nab_chain(x)
    n = 350  # past every probation, with likelihood estimates, a full period of seasonal residuals
    head = stream.process(block[:n], ["a", "b"])
    for value in x[:n]:
        stream.learn_one(float(value), stream="c")
    stream.save(tmp_path / "chain.pt")
    expected = uninterrupted.process(block, ["a", "b"])
    np.testing.assert_array_equal(head, expected[:n])
    for value in x[:n]:
        uninterrupted.learn_one(float(value), stream="c")

    loaded = SpatialAnomaly.load(tmp_path / "chain.pt")  # a fresh object, as a restarted process makes
    assert loaded.stream_ids == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.process(block[n:], ["a", "b"]), expected[n:])
    tail = [(loaded.score_one(float(v), stream="c"), loaded.learn_one(float(v), stream="c"))[0] for v in x[n:]]
    again = [(uninterrupted.score_one(float(v), stream="c"), uninterrupted.learn_one(float(v), stream="c"))[0]
             for v in x[n:]]
    assert tail == again
    assert (np.asarray(expected) >= 0.5).any()  # the comparison covers alarms, not only quiet scores
    torch.load(tmp_path / "chain.pt", weights_only=True)  # tensors and plain containers only


@pytest.mark.parametrize("make", [
    lambda f: AnomalyLikelihood(StreamScorer(f), learning_period=20, estimation_samples=20),
    lambda f: PeakSuppression(StreamScorer(f), period=7),
    lambda f: SpatialAnomaly(StreamScorer(f), tolerance=0.1),
    lambda f: SeasonalSurprise(StreamScorer(f), period=25, memory=30),
    lambda f: WindowNovelty(StreamScorer(f), block=2, window=5, memory=40, learning_period=20, estimation_samples=20),
])
def test_each_wrapper_alone_round_trips(fitted, series, tmp_path, make):
    x = series[0][:300]
    stream, fresh = make(fitted), make(fitted)
    stream.process(x[:150, None])
    stream.save(tmp_path / "w.pt")
    expected = np.concatenate([fresh.process(x[:150, None]), fresh.process(x[150:, None])])
    loaded = type(stream).load(tmp_path / "w.pt")
    np.testing.assert_array_equal(loaded.process(x[150:, None]), expected[150:])
    with pytest.raises(ValueError, match="not a"):
        (StreamScorer if type(stream) is not StreamScorer else AnomalyLikelihood).load(tmp_path / "w.pt")
    assert type(load_stream(tmp_path / "w.pt")) is type(stream)


class ScaledScore(ScoreTransform):
    """A user's own wrapper (defined outside the package): the wrapped score times ``factor``; it
    counts the points each stream learned."""

    STATE = ("learned",)

    def __init__(self, stream, factor: float = 2.0) -> None:
        self.stream, self.factor = stream, float(factor)
        self.learned = np.zeros(0, dtype=np.int64)

    def settings(self) -> dict:
        return {"factor": self.factor}

    def _grow(self, n: int) -> None:
        self.learned = np.concatenate([self.learned, np.zeros(n, dtype=np.int64)])

    def _transform(self, scores, rows, learn):
        if learn:
            self.learned[rows] += len(scores)
        return scores * self.factor


def test_a_wrapper_defined_outside_the_package_saves_and_loads(fitted, series, tmp_path):
    x = series[0]
    stream = ScaledScore(AnomalyLikelihood(StreamScorer(fitted), learning_period=20, estimation_samples=20), 3.0)
    head = stream.process(x[:200, None], ["a"])
    stream.save(tmp_path / "own.pt")
    loaded = load_stream(tmp_path / "own.pt")
    assert type(loaded) is ScaledScore and loaded.factor == 3.0
    np.testing.assert_array_equal(loaded.learned, [200])
    np.testing.assert_array_equal(loaded.process(x[200:, None], ["a"]), stream.process(x[200:, None], ["a"]))
    assert (head > 0).any()


def test_two_wrapper_classes_cannot_share_a_name():
    with pytest.raises(TypeError, match="already registered"):
        type("AnomalyLikelihood", (ScoreTransform,), {})
