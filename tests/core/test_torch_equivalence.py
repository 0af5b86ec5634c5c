"""The dense, ungated layer computes what torch.nn.LSTM / GRU / RNN compute."""
import pytest
import torch
from torch import nn

from sparsernn.core import SparseRecurrent

TORCH_MODULES = {"lstm": nn.LSTM, "gru": nn.GRU, "elman": nn.RNN}


def torch_state(cell, state, layer):
    h, c, _ = layer.unpack_state(state)
    return (h.unsqueeze(0), c.unsqueeze(0)) if cell == "lstm" else h.unsqueeze(0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_from_torch_matches_outputs_state_and_gradients(cell, assert_rel_close):
    torch.manual_seed(0)
    module = TORCH_MODULES[cell](7, 19).double()
    layer = SparseRecurrent.from_torch(module, backend="reference")
    assert layer.cell == cell and layer.weight_hh.dtype == torch.float64
    x = torch.randn(23, 5, 7, dtype=torch.float64)
    state = torch.randn(5, layer.state_size, dtype=torch.float64)

    x1 = x.clone().requires_grad_(True)
    y, final = layer(x1, state)
    (y.square().sum() + final.sum()).backward()

    x2 = x.clone().requires_grad_(True)
    y_ref, final_ref = module(x2, torch_state(cell, state, layer))
    final_ref = torch.cat([s[0] for s in final_ref], 1) if cell == "lstm" else final_ref[0]
    (y_ref.square().sum() + final_ref.sum()).backward()

    assert_rel_close("y", y, y_ref, 1e-12)
    assert_rel_close("final state", final, final_ref, 1e-12)
    assert_rel_close("grad x", x1.grad, x2.grad, 1e-12)
    for name in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]:
        assert_rel_close(f"grad {name}", getattr(layer, name).grad, getattr(module, name + "_l0").grad, 1e-12)


def test_from_torch_float32_within_float_precision(assert_rel_close):
    torch.manual_seed(1)
    module = nn.GRU(4, 33)
    layer = SparseRecurrent.from_torch(module, backend="reference")
    x = torch.randn(40, 3, 4)
    with torch.no_grad():
        assert_rel_close("y", layer(x)[0], module(x)[0], 1e-5)


@pytest.mark.parametrize("bad, match", [
    (nn.LSTM(3, 4, num_layers=2), "num_layers=2"),
    (nn.GRU(3, 4, bidirectional=True), "bidirectional=True"),
    (nn.LSTM(3, 4, proj_size=2), "proj_size=2"),
    (nn.RNN(3, 4, nonlinearity="relu"), "nonlinearity='tanh'"),
])
def test_from_torch_rejects_unsupported_modules(bad, match):
    with pytest.raises(ValueError, match=match):
        SparseRecurrent.from_torch(bad)


def test_from_torch_rejects_non_rnn():
    with pytest.raises(TypeError, match="Linear"):
        SparseRecurrent.from_torch(nn.Linear(3, 4))
