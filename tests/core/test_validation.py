"""Bad input fails early with an error naming the argument, the value and what is allowed."""
import numpy as np
import pytest
import torch

from sparsernn.core import SparseRecurrent


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(cell="rnn"), ValueError, r"cell must be one of \['lstm', 'gru', 'elman'\]; got 'rnn'"),
    (dict(update_gate="always"), ValueError, "update_gate must be one of"),
    (dict(backend="cuda"), ValueError, "backend must be one of"),
    (dict(density_hh=0.0), ValueError, r"density_hh must be in \(0, 1\]; got 0.0"),
    (dict(density_ih=1.5), ValueError, r"density_ih must be in \(0, 1\]; got 1.5"),
    (dict(density_hh="0.5"), TypeError, "density_hh must be a float"),
    (dict(router_keep=0.0), ValueError, r"router_keep must be in \(0, 1\]"),
    (dict(router_keep=(0.5, 2.0)), ValueError, r"router_keep\[1\] \(hidden\) must be in"),
    (dict(router_keep=(0.5, 0.5, 0.5)), ValueError, "router_keep must be a fraction"),
    (dict(target_update_rate=-0.1), ValueError, "target_update_rate must be in"),
    (dict(router_balance_weight=-1), ValueError, "router_balance_weight must be a finite number >= 0"),
    (dict(hidden_size=0), ValueError, "hidden_size must be a positive int; got 0"),
    (dict(input_size=2.5), TypeError, "input_size must be a positive int"),
    (dict(seed="x"), TypeError, "seed must be an int"),
    (dict(seed=2**70), ValueError, r"seed must be an int in \[0, 2\*\*64 - 1\].*got 1180591620717411303424"),
    (dict(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*64 - 1\].*got -1"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
    (dict(dtype=torch.int64), TypeError, "dtype must be a floating-point torch.dtype"),
    (dict(dtype="float32"), TypeError, "dtype must be a floating-point torch.dtype"),
    (dict(density_hh=np.bool_(True)), TypeError, "density_hh must be a float"),
    (dict(density_hh=np.float32("nan")), ValueError, r"density_hh must be in \(0, 1\]; got nan"),
    (dict(router_keep=0.5, router_rank=np.float64(2)), TypeError, "router_rank must be a positive int"),
    (dict(update_gate="rhythm", rhythm_max_period=float("inf")), ValueError, "rhythm_max_period must be a finite"),
    (dict(update_gate="rhythm", rhythm_max_period="100"), TypeError, "rhythm_max_period must be a number"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    args = dict(input_size=3, hidden_size=8) | kwargs
    with pytest.raises(error, match=match):
        SparseRecurrent(**args)


@pytest.fixture
def layer():
    return SparseRecurrent(3, 8, cell="lstm", seed=0, backend="reference")


@pytest.mark.parametrize("make_call, error, match", [
    (lambda l: l(torch.randn(4, 3)), ValueError, r"x must have shape \(T, B, 3\).*got \(4, 3\)"),
    (lambda l: l(torch.randn(4, 2, 5)), ValueError, r"got \(4, 2, 5\)"),
    (lambda l: l(torch.randn(0, 2, 3)), ValueError, "T >= 1 and B >= 1"),
    (lambda l: l(torch.randn(4, 2, 3, dtype=torch.float64)), TypeError, "dtype torch.float64"),
    (lambda l: l([[1.0, 2.0, 3.0]]), TypeError, "x must be a torch.Tensor"),
    (lambda l: l(torch.randn(4, 2, 3), torch.zeros(2, 8)), ValueError, r"state must have shape .*\(2, 16\)"),
    (lambda l: l(torch.randn(4, 2, 3), torch.zeros(2, 16, dtype=torch.float64)), TypeError, "state must be"),
    (lambda l: l(torch.randn(4, 2, 3), None, torch.zeros(4, 3)), ValueError, r"episode_starts must have shape"),
    (lambda l: l(torch.randn(4, 2, 3), None, [[0, 0]]), TypeError, "episode_starts must be a torch.Tensor"),
])
def test_bad_call_arguments(layer, make_call, error, match):
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(error, match=match):
        make_call(layer)
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in before.items())


NUMPY_ARGS = dict(input_size=np.int64(3), hidden_size=np.int32(8), density_ih=np.float32(0.5),
                  density_hh=np.float64(0.25), router_keep=(np.float32(0.5), np.float64(0.25)),
                  router_rank=np.int64(2), update_gate="rhythm", rhythm_frequencies=np.int16(3),
                  rhythm_max_period=np.float32(100.0), target_update_rate=np.float32(0.5),
                  update_rate_weight=np.float64(2.0), router_balance_weight=np.float32(0.1), seed=np.int64(5))


def test_numpy_scalars_are_accepted_as_the_python_numbers_they_hold():
    layer = SparseRecurrent(**NUMPY_ARGS)
    plain = SparseRecurrent(**{k: (v.item() if isinstance(v, np.generic) else
                                   tuple(e.item() for e in v) if isinstance(v, tuple) else v)
                               for k, v in NUMPY_ARGS.items()})
    for name in ("input_size", "hidden_size", "seed"):
        assert type(getattr(layer, name)) is int
    for name in ("density_ih", "density_hh", "target_update_rate", "update_rate_weight", "router_balance_weight"):
        assert type(getattr(layer, name)) is float
    assert all(type(v) is float for v in layer.router_keep)
    assert layer.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in layer.state_dict().items())
    assert repr(layer) == repr(plain)


def test_seed_range_ends_are_accepted():
    for seed in (0, 2**64 - 1):
        assert SparseRecurrent(2, 3, seed=seed).seed == seed


@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, float("nan")])
@pytest.mark.parametrize("backend", ["reference", "fused", "compiled"])
def test_episode_starts_other_than_zero_or_one_are_refused(layer, backend, bad):
    layer.backend = backend
    starts = torch.zeros(4, 2)
    starts[2, 1] = bad
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match=r"episode_starts must hold only 0 and 1 .*got values such as \[" + str(bad)[:3]):
        layer(torch.randn(4, 2, 3), None, starts)
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in before.items())
    assert layer.last_backend is None


@pytest.mark.parametrize("starts", [torch.tensor([[0, 1], [1, 0]]), torch.tensor([[False, True], [True, False]]),
                                    torch.tensor([[0.0, 1.0], [1.0, 0.0]])], ids=["int", "bool", "float"])
def test_episode_starts_of_any_dtype_holding_zero_and_one_are_accepted(layer, starts):
    x = torch.randn(2, 2, 3)
    y, _ = layer(x, None, starts)
    y_ref, _ = layer(x, None, starts.float())
    assert torch.equal(y, y_ref)
