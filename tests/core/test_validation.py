"""Bad input fails early with an error naming the argument, the value and what is allowed."""
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
