"""The rhythm gate's explicit periods (``rhythm_periods``) and fixed frequencies (``rhythm_learn_periods``)."""
import copy
import math

import numpy as np
import pytest
import torch

from sparsernn.core import SparseRecurrent


def rhythm_layer(periods, learn=True, **kwargs):
    return SparseRecurrent(1, 6, update_gate="rhythm", rhythm_periods=periods, rhythm_learn_periods=learn,
                           seed=0, **kwargs)


@pytest.mark.parametrize("periods", [[7.0], [5, 12.5, 288], np.array([2.0, 2016.0]), torch.tensor([48.0, 336.0])])
def test_the_schedule_has_the_periods_given(periods):
    layer = rhythm_layer(periods)
    given = [float(p) for p in periods]
    assert layer.rhythm_periods == tuple(given)
    assert layer.gate.omega.shape == (len(given),) and layer.gate.phase.shape == (6, len(given))
    torch.testing.assert_close(2 * math.pi / layer.gate.omega.double(), torch.tensor(given, dtype=torch.float64),
                               rtol=1e-6, atol=0)


def test_one_period_repeats_the_schedule_every_period_steps():
    layer = rhythm_layer([24.0], dtype=torch.float64)  # omega rounded to float32 first (the default dtype)
    times = torch.arange(200, dtype=torch.float64)
    torch.testing.assert_close(layer.gate.schedule(times + 24), layer.gate.schedule(times), rtol=0, atol=1e-5)
    assert not torch.allclose(layer.gate.schedule(times + 12), layer.gate.schedule(times), atol=1e-3)


def test_the_default_spread_is_unchanged_without_periods():
    default = SparseRecurrent(1, 6, update_gate="rhythm", rhythm_frequencies=3, rhythm_max_period=50.0, seed=0)
    assert default.rhythm_periods is None
    expected = 2 * math.pi / torch.logspace(math.log10(2.0), math.log10(50.0), 3)
    assert torch.equal(default.gate.omega.detach(), expected)


def test_the_initial_update_rate_holds_with_explicit_periods():
    layer = rhythm_layer([288.0, 2016.0], initial_update_rate=0.25)
    times = torch.arange(2 * 2016, dtype=torch.float32)
    rate = (layer.gate(times) > 0).double().mean().item()
    assert abs(rate - 0.25) < 0.01


@pytest.mark.parametrize("periods, error", [
    ("288", TypeError), (288, TypeError), ([288, "a"], TypeError), ([True], TypeError), ({288}, TypeError),
    ([], ValueError), ([1.5], ValueError), ([0], ValueError), ([3, float("inf")], ValueError),
    ([float("nan")], ValueError), (torch.ones(2, 2) * 5, TypeError),
])
def test_bad_periods_are_refused(periods, error):
    with pytest.raises(error, match="rhythm_periods"):
        rhythm_layer(periods)


@pytest.mark.parametrize("gate", [None, "event"])
def test_periods_need_the_rhythm_gate(gate):
    with pytest.raises(ValueError, match="needs update_gate='rhythm'"):
        SparseRecurrent(1, 6, update_gate=gate, rhythm_periods=[24.0])


def test_learn_periods_must_be_a_bool():
    with pytest.raises(TypeError, match="rhythm_learn_periods"):
        rhythm_layer([24.0], learn=0)


def test_fixed_periods_stay_through_training_and_learnt_ones_move():
    torch.manual_seed(0)
    x = torch.randn(40, 4, 1)
    moved = {}
    for learn in (True, False):
        layer = rhythm_layer([24.0, 168.0], learn=learn, backend="reference")
        start = layer.gate.omega.detach().clone()
        assert ("gate.omega" in dict(layer.named_parameters())) == learn
        optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)
        for _ in range(5):
            y, _ = layer(x)
            optimizer.zero_grad()
            y.square().mean().backward()
            optimizer.step()
        moved[learn] = not torch.equal(layer.gate.omega.detach(), start)
    assert moved == {True: True, False: False}


@pytest.mark.parametrize("learn", [True, False])
def test_periods_are_saved_with_the_layer(learn):
    layer = rhythm_layer([24.0, 168.0], learn=learn)
    state = layer.state_dict()
    assert "gate.omega" in state
    with torch.no_grad():
        state["gate.omega"] = state["gate.omega"] * 1.5  # e.g. learnt frequencies
    other = rhythm_layer([24.0, 168.0], learn=learn)
    other.load_state_dict(state)
    assert torch.equal(other.gate.omega, state["gate.omega"])
    twin = copy.deepcopy(layer)
    assert twin.rhythm_periods == (24.0, 168.0) and twin.rhythm_learn_periods == learn
    assert "rhythm_periods=(24.0, 168.0)" in repr(layer)
    x = torch.randn(30, 2, 1)
    assert torch.equal(twin(x)[0], layer(x)[0])


def test_the_time_index_continues_across_calls():
    """A stream resumes with the state's time index: two calls give the one call's bits."""
    layer = rhythm_layer([5.0, 9.0], dtype=torch.float64)
    x = torch.randn(50, 3, 1, dtype=torch.float64)
    y, state = layer(x)
    assert state[:, -1].tolist() == [50.0] * 3
    y1, mid = layer(x[:17])
    y2, end = layer(x[17:], mid)
    torch.testing.assert_close(torch.cat([y1, y2]), y, rtol=0, atol=1e-12)
    assert torch.equal(end, state)


def test_an_initial_state_can_start_the_clock():
    layer = rhythm_layer([5.0, 9.0], dtype=torch.float64)
    state = layer.initial_state(3, time=torch.tensor([0, 7, 40]))
    assert state[:, -1].tolist() == [0.0, 7.0, 40.0] and not state[:, :-1].any()
    x = torch.randn(10, 3, 1, dtype=torch.float64)
    _, warmed = layer(torch.randn(7, 1, 1, dtype=torch.float64))
    from_seven = layer(x[:, 1:2], layer.pack_state(torch.zeros(1, 6, dtype=torch.float64), time=warmed[:, -1]))[0]
    assert torch.equal(layer(x, state)[0][:, 1:2], from_seven)
    event = SparseRecurrent(1, 6, update_gate="event", seed=0)
    assert torch.equal(event.initial_state(2, time=torch.tensor([3, 4])), event.initial_state(2))
