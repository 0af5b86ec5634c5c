"""The whole streaming chain saves and loads (arrays + JSON): a restarted process continues bit-identically."""
import numpy as np
import pandas as pd
import pytest
import torch

from sparsernn.detectors import (AnomalyLikelihood, PeakSuppression, SeasonalSurprise, SpatialAnomaly, StreamScorer,
                                 WindowNovelty, load_stream)
from sparsernn.detectors.nab import SelectiveUpdateNAB

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
