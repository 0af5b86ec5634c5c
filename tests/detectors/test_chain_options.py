"""Options of the NAB chain: ``novelty_memory`` (it reaches the novelty, and a NAB-proportioned file never fills
2080) and ``bounded_surprise`` (the surprise's likelihood only)."""
import numpy as np
import pandas as pd

from sparsernn.detectors.nab import SelectiveUpdateNAB

from .conftest import SMALL

PARAMS = {k: v for k, v in SMALL.items() if k != "progress"}


def novelty_in(chain):
    while not hasattr(chain, "bank"):
        chain = getattr(chain, chain.INNER)
    return chain


def scores(memory, n=3000, blocks=208):
    """A NAB-proportioned file (probationary 15 %) through the chain with ``novelty_memory=memory``."""
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(n) / 9.0) + 0.2 * rng.standard_normal(n)
    x[2000:2030] += 2.0
    stamps = pd.date_range("2024-01-01", periods=n, freq="5min")
    nab = SelectiveUpdateNAB(seed=0, novelty_blocks=blocks, novelty_memory=memory, **PARAMS)
    chain = nab.pipeline(x, probationary=int(0.15 * n), timestamps=stamps)
    return chain.process(x[:, None], [0])[:, 0], novelty_in(chain)


def test_the_memory_reaches_the_novelty_and_bounds_its_store():
    full, novelty = scores(8192)
    assert novelty.memory == 8192 and novelty.bank.shape[1] == 8192
    stored = int(novelty.stored[0])
    assert 0 < stored <= 10 * 208  # n / block with block = round(450 / 208) = 2: 1500 stores
    same, small = scores(10 * 208)
    np.testing.assert_array_equal(same, full)  # the store never fills: the same scores
    assert int(small.stored[0]) == stored
    forgetful, tiny = scores(50)
    assert tiny.bank.shape[1] == 50 and not np.array_equal(forgetful, full)


def test_bounded_surprise_reaches_the_surprise_likelihood_only():
    from sparsernn.detectors import AnomalyLikelihood

    x = np.sin(np.arange(600) / 9.0)
    stamps = pd.date_range("2024-01-01", periods=600, freq="5min")
    chain = SelectiveUpdateNAB(seed=0, bounded_surprise=True, **PARAMS).pipeline(x, probationary=90, timestamps=stamps)
    likelihoods = []
    while not hasattr(chain, "detector"):  # down to the scorer
        if isinstance(chain, AnomalyLikelihood):
            likelihoods.append(chain)
        chain = chain.inner
    assert [lk.bounded for lk in likelihoods] == [True]
    novelty = novelty_in(SelectiveUpdateNAB(seed=0, bounded_surprise=True, **PARAMS).pipeline(
        x, probationary=90, timestamps=stamps))
    assert "bounded" not in novelty.settings()
