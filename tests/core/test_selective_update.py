"""suRNN switches: closed neurons keep their state bit-exactly; a fresh layer
updates a sensible fraction; the rate target and the straight-through gradient."""
import pytest
import torch

from sparsernn.core import SparseRecurrent


def gate_preactivations(layer, x, hs, time0):
    """Recompute the switch pre-activations of every step from the outputs."""
    pre = []
    for t in range(x.shape[0]):
        if layer.update_gate == "rhythm":
            pre.append(layer.gate(time0 + t))
        else:
            pre.append(layer.gate(x[t], hs[t]))
    return torch.stack(pre)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_closed_neurons_keep_their_state_bit_exactly(cell, gate, backend):
    layer = SparseRecurrent(5, 23, cell=cell, update_gate=gate, seed=4, backend=backend, router_keep=0.5)
    x = torch.randn(20, 3, 5)
    state = torch.randn(3, layer.state_size)
    if gate == "rhythm":
        state[:, -1] = 0.0
    with torch.no_grad():
        y, final = layer(x, state)
        h0, c0, _ = layer.unpack_state(state)
        hs = torch.cat([h0.unsqueeze(0), y])  # h_{t-1} for t = 0..T
        is_open = gate_preactivations(layer, x, hs[:-1], torch.zeros(3)) > 0
    closed = ~is_open
    assert closed.any() and is_open.any()
    assert torch.equal(hs[1:][closed], hs[:-1][closed]), "a closed neuron changed its state"
    assert (hs[1:][is_open] != hs[:-1][is_open]).float().mean() > 0.99
    assert layer.statistics()["update_rate"] == pytest.approx(is_open.float().mean().item())


@pytest.mark.parametrize("gate", ["rhythm", "event"])
def test_a_fresh_layer_updates_a_sensible_fraction(gate):
    layer = SparseRecurrent(8, 64, update_gate=gate, seed=0, backend="reference")
    with torch.no_grad():
        layer(torch.randn(100, 16, 8))
    assert 0.2 < layer.statistics()["update_rate"] < 0.8


@pytest.mark.parametrize("gate", ["rhythm", "event"])
def test_gate_parameters_learn_through_the_straight_through_surrogate(gate):
    layer = SparseRecurrent(4, 16, update_gate=gate, seed=0, backend="reference")
    y, _ = layer(torch.randn(12, 3, 4))
    y.sum().backward()
    grads = [p.grad for p in layer.gate.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_update_rate_target_loss_moves_the_rate():
    layer = SparseRecurrent(4, 32, update_gate="event", target_update_rate=0.1, update_rate_weight=1.0,
                            seed=0, backend="reference")
    assert layer.aux_loss().item() == 0.0  # before any call
    assert layer.update_rate_mode == "ceiling"  # the default: a ceiling still lowers a rate above it
    opt = torch.optim.Adam(layer.gate.parameters(), lr=0.05)
    x = torch.randn(20, 8, 4)
    layer(x)
    start = layer.statistics()["update_rate"]
    for _ in range(40):
        opt.zero_grad()
        layer(x)
        layer.aux_loss().backward()
        opt.step()
    layer(x)
    end = layer.statistics()["update_rate"]
    assert start > 0.3 and end < 0.2, (start, end)


def test_no_regulariser_configured_gives_exact_zero():
    layer = SparseRecurrent(4, 8, update_gate="rhythm", router_keep=0.5, seed=0, backend="reference")
    layer(torch.randn(3, 2, 4))
    loss = layer.aux_loss()
    assert loss.item() == 0.0 and loss.shape == ()


@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.5, 1.0])
def test_initial_update_rate_sets_the_share_of_open_neurons(gate, rate):
    layer = SparseRecurrent(16, 128, update_gate=gate, initial_update_rate=rate, seed=1, backend="reference")
    with torch.no_grad():
        layer(torch.randn(64, 32, 16))
    realised = layer.statistics()["update_rate"]
    # 64 x 32 x 128 switches: a rate off by more than a few points is a wrong bias, not noise
    assert abs(realised - rate) < 0.03 + 0.1 * rate, (gate, rate, realised)


def test_initial_update_rate_without_a_gate_or_out_of_range_is_refused():
    with pytest.raises(ValueError, match="initial_update_rate=0.1 needs an update_gate"):
        SparseRecurrent(4, 8, initial_update_rate=0.1)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="initial_update_rate must be in"):
            SparseRecurrent(4, 8, update_gate="event", initial_update_rate=bad)
    with pytest.raises(TypeError, match="initial_update_rate"):
        SparseRecurrent(4, 8, update_gate="event", initial_update_rate="0.1")


@pytest.mark.parametrize("cell", ["gru", "lstm", "elman"])
def test_the_switch_gradient_flows_at_open_pairs_only(cell):
    """The straight-through rule (cells.switch): dL/da = sigmoid'(a) dL/dh_new (new - old) where the
    switch is open, 0 where it is closed (a closed neuron's candidate is never computed)."""
    torch.manual_seed(0)
    layer = SparseRecurrent(3, 6, cell=cell, update_gate="event", seed=2, backend="reference").double()
    x, state = torch.randn(1, 4, 3, dtype=torch.float64), torch.randn(4, layer.state_size, dtype=torch.float64)
    h0 = layer.unpack_state(state)[0]
    with torch.no_grad():
        layer.gate.bias.copy_(torch.linspace(-1, 1, 6, dtype=torch.float64))
    preact = layer.gate(x[0], h0).detach()
    assert (preact > 0).any() and (preact <= 0).any()
    y, _ = layer(x, state)
    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    # the candidate every neuron would take, from the same layer with the gate off
    ungated = SparseRecurrent(3, 6, cell=cell, seed=2, backend="reference").double()
    ungated.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("gate.")})
    with torch.no_grad():
        new = ungated(x, state[:, :ungated.state_size])[0][0]
    soft = torch.sigmoid(preact)
    expected = torch.where(preact > 0, soft * (1 - soft) * upstream[0] * (new - h0), torch.zeros_like(new))
    torch.testing.assert_close(layer.gate.bias.grad, expected.sum(0), rtol=1e-10, atol=1e-12)
