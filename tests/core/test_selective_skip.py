"""The selective loops that skip closed neurons (core/fused_selective.py, core/csrc/selective_*.cpp)
against the reference, for the GRU, the LSTM and the Elman cell: outputs, final state (the LSTM's c
included), every gradient (aux loss included) at update rates 0.05-1.0, odd sizes, resets, both step
modes (gathered products and dense GEMMs), groups, and extreme inputs; that they do skip (the
candidates computed are the open pairs); and that the tolerance catches a kernel that is slightly wrong."""
import pytest
import torch

import sparsernn.core.fused_selective as fused_selective
from sparsernn.core import SparseRecurrent, fused_group_forward
from sparsernn.core.native import native_loops

from .conftest import extreme_sequence, random_sequence

pytestmark = pytest.mark.skipif(native_loops() is None, reason="the C++ loops are not built here")

RTOL = 1e-10  # float64; a wrong factor or a missed pair is off by far more
CELLS = ["gru", "lstm", "elman"]


def _layer(gate, rate, hidden=37, inputs=7, seed=0, cell="gru", **options):
    return SparseRecurrent(inputs, hidden, cell=cell, update_gate=gate, initial_update_rate=rate, seed=seed,
                           dtype=torch.float64, backend="reference", **options)


@pytest.fixture
def calls(monkeypatch):
    """Records each call of the C++ selective forward: (save, dense threshold, cell)."""
    seen = []
    native = native_loops()
    original = native.selective_forward

    class Spy:
        def __getattr__(self, name):
            return getattr(native, name)

        def selective_forward(self, *args):
            seen.append((*args[-2:], args[0]))
            return original(*args)

    monkeypatch.setattr(fused_selective, "native_for", lambda like, applies=True: Spy())
    return seen


@pytest.mark.parametrize("dense_above", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("cell", CELLS)
def test_selective_loops_match_the_reference(cell, gate, rate, dense_above, calls, monkeypatch,
                                             assert_backend_matches_reference):
    monkeypatch.setattr(fused_selective, "SELECTIVE_DENSE_ABOVE", dict.fromkeys(CELLS, dense_above))
    monkeypatch.setattr(fused_selective, "SELECTIVE_MIN_DENSE_WIDTH", 1)
    seed = int(rate * 100) + (gate == "event") + 7 * CELLS.index(cell)
    layer = _layer(gate, rate, seed=seed, cell=cell, target_update_rate=0.3)
    x, state, starts = random_sequence(layer, seed, 23, 6, reset_rate=0.1)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)
    assert calls and calls[-1][0] is True and calls[-1][2] == cell  # the selective loops ran, with a backward pass


@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("hidden, inputs, batch", [(1, 1, 1), (17, 3, 1), (129, 33, 9)])
@pytest.mark.parametrize("cell", CELLS)
def test_selective_loops_match_the_reference_at_odd_sizes(cell, gate, hidden, inputs, batch, calls,
                                                          assert_backend_matches_reference):
    layer = _layer(gate, 0.2, hidden=hidden, inputs=inputs, seed=hidden, cell=cell)
    x, state, starts = random_sequence(layer, hidden, 11, batch, reset_rate=0.1)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)
    assert calls


@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("cell", CELLS)
def test_selective_loops_match_the_reference_on_extreme_inputs(cell, gate, calls, assert_backend_matches_reference):
    layer = _layer(gate, 0.3, seed=5, cell=cell)
    x, state, starts = extreme_sequence(layer, 5, 19, 4, reset_rate=0.1)
    assert_backend_matches_reference(layer, "fused", x, state, starts, 1e-9)
    assert calls


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_the_reference(cell, calls, assert_rel_close):
    layer = _layer("event", 0.2, hidden=64, inputs=8, cell=cell).float()
    x, state, starts = random_sequence(layer, 3, 16, 8, reset_rate=0.1)
    with torch.no_grad():
        ref = layer(x, state, starts)
        layer.backend = "fused"
        got = layer(x, state, starts)
    assert_rel_close("y float32", got[0], ref[0], 1e-5)
    assert_rel_close("state float32", got[1], ref[1], 1e-5)
    assert calls and calls[-1][0] is False  # without grad: nothing saved


@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("cell", CELLS)
def test_only_open_pairs_are_computed(cell, gate, monkeypatch):
    monkeypatch.setattr(fused_selective, "SELECTIVE_DENSE_ABOVE", dict.fromkeys(CELLS, 1.0))
    layer = _layer(gate, 0.1, hidden=64, seed=2, cell=cell)
    layer.backend = "fused"
    x, state, starts = random_sequence(layer, 2, 20, 8, reset_rate=0.0)
    with torch.no_grad():
        layer(x, state)
    stats = layer.statistics()
    assert stats["computed_fraction"] == stats["update_rate"]  # exactly: both count the same pairs
    assert 0.02 < stats["computed_fraction"] < 0.3
    monkeypatch.setattr(fused_selective, "SELECTIVE_DENSE_ABOVE", dict.fromkeys(CELLS, 0.0))  # every step dense
    monkeypatch.setattr(fused_selective, "SELECTIVE_MIN_DENSE_WIDTH", 1)
    with torch.no_grad():
        layer(x, state)
    assert layer.statistics()["computed_fraction"] == 1.0


@pytest.mark.parametrize("cell", CELLS)
def test_closed_neurons_keep_their_state_bit_exactly(cell, calls):
    layer = _layer("event", 0.1, hidden=50, seed=4, cell=cell).float()
    layer.backend = "fused"
    x, state, _ = random_sequence(layer, 4, 12, 5, reset_rate=0.0)
    y, _ = layer(x, state)
    h0 = layer.unpack_state(state)[0]
    previous = torch.cat([h0.unsqueeze(0), y[:-1].detach()])
    preact = torch.stack([layer.gate(x[t], previous[t]) for t in range(x.shape[0])]).detach()
    closed = preact <= 0
    assert closed.float().mean() > 0.5
    assert torch.equal(y.detach()[closed], previous[closed])
    # step by step, h and (LSTM) c of every closed pair are the bits that entered the step
    closed_seen = 0
    with torch.no_grad():
        for t in range(x.shape[0]):
            h, c, _ = layer.unpack_state(state)
            open_now = layer.gate(x[t], h) > 0
            _, state = layer(x[t:t + 1], state)
            h_new, c_new, _ = layer.unpack_state(state)
            assert torch.equal(h_new[~open_now], h[~open_now])
            if cell == "lstm":
                assert torch.equal(c_new[~open_now], c[~open_now])
                assert not torch.equal(c_new[open_now], c[open_now])  # the open ones did move
            closed_seen += int((~open_now).sum())
    assert closed_seen > 0 and calls and all(call[2] == cell for call in calls)


@pytest.mark.parametrize("cell", CELLS)
def test_group_equals_separate_calls(cell, calls, assert_rel_close):
    layers = [_layer("event", 0.15, seed=s, hidden=40, cell=cell) for s in (1, 2)]
    for layer in layers:
        layer.backend = "fused"
    x, state, starts = random_sequence(layers[0], 9, 15, 4, reset_rate=0.1)
    x.requires_grad_(True)
    together = fused_group_forward(layers, x, [state, state], starts)
    loss = sum((y * (g + 1)).sum() for g, (y, _) in enumerate(together))
    grads_together = torch.autograd.grad(loss, [x, *layers[0].parameters(), *layers[1].parameters()])
    apart = [layer(x, state, starts) for layer in layers]
    loss = sum((y * (g + 1)).sum() for g, (y, _) in enumerate(apart))
    grads_apart = torch.autograd.grad(loss, [x, *layers[0].parameters(), *layers[1].parameters()])
    for (y1, s1), (y2, s2) in zip(together, apart):
        assert_rel_close("y", y1, y2, RTOL)
        assert_rel_close("state", s1, s2, RTOL)
    for i, (a, b) in enumerate(zip(grads_together, grads_apart)):
        assert_rel_close(f"grad {i}", a, b, RTOL)


def test_small_layers_never_run_dense_steps():
    width = fused_selective.SELECTIVE_MIN_DENSE_WIDTH
    for cell in CELLS:
        assert fused_selective.dense_above(torch.zeros(3, 8, 2), width // 8 - 1, cell) == 1.0
        assert fused_selective.dense_above(torch.zeros(3, 8, 2), width // 8, cell) == \
            fused_selective.SELECTIVE_DENSE_ABOVE[cell]


@pytest.mark.parametrize("steps, batch", [(1, 1), (32, 64)])
@pytest.mark.parametrize("cell", CELLS)
def test_auto_runs_gated_layers_on_the_selective_loops(cell, steps, batch):
    layer = SparseRecurrent(4, 300, cell=cell, update_gate="event", initial_update_rate=0.1, seed=0)
    assert layer.backend_for(torch.zeros(steps, batch, 4)) == "fused"
    half = SparseRecurrent(4, 300, cell=cell, update_gate="event", seed=0)  # about half open, small
    expected = "fused" if fused_selective.SELECTIVE_SMALL_MAX_RATE[cell] >= 0.5 else "reference"  # else: the dense rule
    assert half.backend_for(torch.zeros(1, 1, 4)) == expected


def test_small_layers_skip_only_when_configured_sparse():
    x = torch.zeros(32, 8, 4)
    sparse = SparseRecurrent(4, 64, update_gate="event", initial_update_rate=0.1, seed=0)
    assert fused_selective.selective_native([sparse], x) is not None
    half = SparseRecurrent(4, 64, update_gate="event", seed=0)  # about half open: the loops that compute all
    assert fused_selective.selective_native([half], x) is None
    target = SparseRecurrent(4, 64, update_gate="rhythm", initial_update_rate=0.1, target_update_rate=0.5, seed=0)
    assert fused_selective.selective_native([target], x) is None  # the target is what training keeps
    assert fused_selective.selective_native([sparse, half], x) is None  # a group: its widest member decides
    wide = torch.zeros(32, 64, 4)
    large = SparseRecurrent(4, 1024, update_gate="event", seed=0)
    assert fused_selective.selective_native([large], wide) is not None
    lstm = SparseRecurrent(4, 64, cell="lstm", update_gate="event", initial_update_rate=0.1, seed=0)
    assert fused_selective.selective_native([lstm], x) is not None
    half_lstm = SparseRecurrent(4, 64, cell="lstm", update_gate="rhythm", seed=0)
    assert fused_selective.selective_native([half_lstm], x) is None
    elman = SparseRecurrent(4, 64, cell="elman", update_gate="rhythm", initial_update_rate=1.0, seed=0)
    assert fused_selective.selective_native([elman], x) is not None  # its selective loops won at every rate
    routed = SparseRecurrent(4, 64, update_gate="event", initial_update_rate=0.1, router_keep=0.5, seed=0)
    assert fused_selective.selective_native([routed], x) is None  # routed layers: the routed loops


@pytest.mark.parametrize("gate", ["rhythm", "event"])
@pytest.mark.parametrize("cell", CELLS)
def test_always_open_neurons_in_the_selective_loops(cell, gate, calls, assert_backend_matches_reference):
    layer = _layer(gate, 0.3, hidden=40, seed=8, cell=cell, always_open_fraction=0.2, target_update_rate=0.3)
    x, state, starts = random_sequence(layer, 8, 17, 5, reset_rate=0.1)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)
    assert calls
    assert bool((layer.update_usage()[:8] == 1.0).all())  # the first 20 % opened at every pair


def test_profile_script_shows_the_selective_loops():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "profile_selective.py"
    spec = importlib.util.spec_from_file_location("profile_selective", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.main(["--T", "4", "--B", "2", "--I", "3", "--hidden", "16", "--calls", "1"])
    assert "_SelectiveSequenceBackward" in table  # a layer set 0.1 open runs the selective loops


@pytest.mark.parametrize("where", ["y", "c", "weight_hh grad", "h0 grad"])
@pytest.mark.parametrize("cell", CELLS)
def test_a_slightly_wrong_kernel_is_caught(cell, where, monkeypatch, assert_backend_matches_reference):
    """The comparison can fail: the same loops with one result off by a relative 1e-8 (far less than a
    wrong factor or a missed pair gives) do not pass it."""
    if where == "c" and cell != "lstm":
        pytest.skip("only the LSTM has a cell state")
    native = native_loops()
    nudge = 1.0 + 1e-8

    class Mutant:
        def __getattr__(self, name):
            return getattr(native, name)

        def selective_forward(self, *args):
            out = native.selective_forward(*args)
            if where == "y":
                out[0].mul_(nudge)
            if where == "c":
                out[2].mul_(nudge)
            return out

        def selective_backward(self, *args):
            out = native.selective_backward(*args)
            if where == "weight_hh grad":
                out[5].mul_(nudge)
            if where == "h0 grad":
                out[1].mul_(nudge)
            return out

    monkeypatch.setattr(fused_selective, "native_for", lambda like, applies=True: Mutant())
    layer = _layer("event", 0.3, seed=11, cell=cell)
    x, state, starts = random_sequence(layer, 11, 13, 4, reset_rate=0.1)
    with pytest.raises(AssertionError, match="relative error"):
        assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)
