"""The fused backend against the reference oracle: outputs, final state, every
gradient (aux loss included) and statistics, for every cell x {dense,
block-sparse, rhythm-gated, event-gated, sparse + gated, routed, all three};
the group call; inference without grad; and what it refuses."""
import copy

import pytest
import torch

from sparsernn.core import SparseRecurrent, choose_backend, fused_group_forward, group_forward

from .conftest import EXTREMES, extreme_sequence, random_sequence

CONFIGS = {
    "dense": {},
    "block_sparse": dict(density_ih=0.5, density_hh=0.1),
    "rhythm": dict(update_gate="rhythm", target_update_rate=0.3),
    "event": dict(update_gate="event", target_update_rate=0.6),
    "sparse_event": dict(density_ih=0.3, density_hh=0.25, update_gate="event", target_update_rate=0.5),
    "routed": dict(router_keep=(0.4, 0.1), router_balance_weight=0.1),
    "routed_hidden_only": dict(router_keep=(1.0, 0.3), router_balance_weight=0.1),
    "all_three": dict(density_ih=0.3, density_hh=0.25, router_keep=0.25, update_gate="rhythm",
                      target_update_rate=0.5, router_balance_weight=0.05),
    "rhythm_always_open": dict(update_gate="rhythm", always_open_fraction=0.3, target_update_rate=0.5,
                               update_rate_mode="set_point"),
    "event_always_open": dict(update_gate="event", always_open_fraction=0.25, target_update_rate=0.4),
    "routed_event_always_open": dict(router_keep=(1.0, 0.3), update_gate="event", always_open_fraction=0.25,
                                     target_update_rate=0.4, update_rate_mode="set_point"),
}
T, B, I, H = 41, 5, 11, 37
RTOL = 1e-10  # float64; a wrong derivative factor is off by >1e-3


@pytest.fixture(params=["native", "torchscript"])
def loops(request, monkeypatch):
    """Run a test with the C++ loops (core/csrc) and again with the TorchScript ones."""
    monkeypatch.setenv("SPARSERNN_NATIVE", "1" if request.param == "native" else "0")
    return request.param


def random_inputs(layer, seed, steps=T, batch=B):
    return random_sequence(layer, seed, steps, batch, reset_rate=0.08)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_fused_matches_reference(cell, config, loops, device, assert_backend_matches_reference):
    seed = 7 + len(cell) * 13 + list(CONFIGS).index(config)
    layer = _layer(cell, config, seed, I, H, device)
    x, state, starts = random_inputs(layer, seed)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)


def _layer(cell, config, seed, input_size, hidden_size, device, dtype=torch.float64):
    layer = SparseRecurrent(input_size, hidden_size, cell=cell, seed=seed, dtype=dtype, backend="reference",
                            device=device, **CONFIGS[config])
    if layer.router is not None:
        with torch.no_grad():  # a live context term (it starts at zero)
            up = torch.randn(layer.router.up.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
            layer.router.up.copy_(up)
    return layer


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_fused_matches_reference_on_extreme_inputs(cell, config, loops, device, assert_backend_matches_reference):
    """Spikes of +-500, +-1e4 and +-1e30 among ordinary inputs (exp of them overflows): outputs,
    final state, every gradient and the statistics finite and equal to the reference's."""
    seed = 3 + len(cell) * 13 + list(CONFIGS).index(config)
    layer = _layer(cell, config, seed, 5, 13, device)
    x, state, starts = extreme_sequence(layer, seed, 17, 3, reset_rate=0.08)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)


@pytest.mark.parametrize("gate", [None, "event"])
@pytest.mark.parametrize("spike", EXTREMES)
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_float32_spike_stays_finite_and_equal_to_reference(cell, spike, gate, loops, device,
                                                           assert_backend_matches_reference):
    """The issue's case: ``SparseRecurrent(1, 8, seed=0)`` in float32 on a sequence with one
    extreme value (the C++ loops returned NaN: exp overflowed under -ffast-math)."""
    layer = SparseRecurrent(1, 8, cell=cell, seed=0, update_gate=gate, device=device)
    x = torch.linspace(-1, 1, 12).view(6, 2, 1).to(device)
    x[2, 0, 0] = spike
    # float32 against float32: the weight gradient sums products with the spike (500 x a
    # float32 rounding); a NaN or a wrong saturation is off by far more
    assert_backend_matches_reference(layer, "fused", x, layer.initial_state(2), None, 1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_closed_neurons_keep_their_state_exactly(cell, loops):
    layer = SparseRecurrent(4, 16, cell=cell, update_gate="event", backend="fused", seed=1)
    with torch.no_grad():
        layer.gate.bias.fill_(-50.0)  # every switch closed
        state = torch.randn(3, layer.state_size)
        y, final = layer(torch.randn(9, 3, 4), state)
    assert torch.equal(final, state)
    assert torch.equal(y[-1], state[:, :16])


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_fused_without_grad_matches_reference(cell, loops, assert_rel_close):
    layer = SparseRecurrent(6, 17, cell=cell, update_gate="rhythm", density_hh=0.3, seed=3, dtype=torch.float64)
    x, state, starts = random_inputs(layer, 5, steps=20, batch=4)
    with torch.no_grad():
        layer.backend = "reference"
        y_ref, s_ref = layer(x, state, starts)
        stats_ref = layer.statistics()
        layer.backend = "fused"
        y, s = layer(x, state, starts)
    assert_rel_close("y", y, y_ref, RTOL)
    assert_rel_close("state", s, s_ref, RTOL)
    stats = layer.statistics()
    stats.pop("computed_fraction"), stats_ref.pop("computed_fraction")  # a gated GRU skips closed neurons fused
    assert stats == pytest.approx(stats_ref)


@pytest.mark.parametrize("options", [{}, {"update_gate": "event"}, {"router_keep": 0.5, "cell": "lstm"}])
def test_group_equals_separate_calls(options, loops, assert_rel_close):
    actor = SparseRecurrent(5, 12, density_hh=0.5, seed=1, dtype=torch.float64, **options)
    critic = SparseRecurrent(5, 12, density_hh=0.5, seed=2, dtype=torch.float64, **options)
    x, _, starts = random_inputs(actor, 9, steps=15, batch=3)
    states = [torch.randn(3, actor.state_size, dtype=torch.float64) for _ in range(2)]

    def grads_of(outputs):
        loss = sum((y * (g + 1)).sum() + s.square().sum() for g, (y, s) in enumerate(outputs))
        params = list(actor.parameters()) + list(critic.parameters())
        return outputs, torch.autograd.grad(loss, params, allow_unused=True)

    for layer in (actor, critic):
        layer.backend = "reference"
    ref_out, ref_grads = grads_of([layer(x, s, starts) for layer, s in zip((actor, critic), states)])
    got_out, got_grads = grads_of(fused_group_forward([actor, critic], x, states, starts))
    assert actor.last_backend == critic.last_backend == "fused"
    for (y, s), (y_ref, s_ref) in zip(got_out, ref_out):
        assert_rel_close("y", y, y_ref, RTOL)
        assert_rel_close("state", s, s_ref, RTOL)
    for g, g_ref in zip(got_grads, ref_grads):
        assert (g is None) == (g_ref is None)
        if g is not None:
            assert_rel_close("grad", g, g_ref, RTOL)


def test_fused_router_mask_keeps_exactly_the_top_k():
    from sparsernn.core.fused_routed_loops import _topk_mask

    scores = torch.randn(2, 4, 20)
    mask = _topk_mask(scores, 5)
    assert torch.equal(mask.sum(2), torch.full((2, 4), 5.0))
    threshold = scores.topk(5, 2).values[..., -1:]
    assert torch.equal(mask.bool(), scores >= threshold)
    assert torch.equal(_topk_mask(scores, 20), torch.ones_like(scores))


def test_fused_refuses_mixed_groups():
    gru, lstm = SparseRecurrent(4, 8, cell="gru", seed=0), SparseRecurrent(4, 8, cell="lstm", seed=0)
    with pytest.raises(ValueError, match="one cell, size, update gate and router"):
        fused_group_forward([gru, lstm], torch.randn(3, 2, 4), [gru.initial_state(2), lstm.initial_state(2)])
    routed = SparseRecurrent(4, 8, cell="gru", router_keep=0.5, seed=0)
    with pytest.raises(ValueError, match="one cell, size, update gate and router"):
        fused_group_forward([gru, routed], torch.randn(3, 2, 4), [gru.initial_state(2), routed.initial_state(2)])
    with pytest.raises(ValueError, match=r"state must have shape"):
        fused_group_forward([gru], torch.randn(3, 2, 4), [torch.zeros(3, 8)])


def test_auto_picks_fused_for_small_calls_on_cpu():
    layer = SparseRecurrent(4, 64, cell="lstm", seed=0)
    assert choose_backend(torch.zeros(32, 8, 4), layer) == "fused"
    assert choose_backend(torch.zeros(32, 1024, 4), layer) == "fused"  # B * H = 65536: RL's largest minibatches
    assert choose_backend(torch.zeros(32, 1025, 4), layer) == "reference"
    assert choose_backend(torch.zeros(1, 8, 4), layer) == "fused"  # RL's acting step
    gated_lstm = SparseRecurrent(4, 64, cell="lstm", update_gate="event", seed=0)  # about half open
    assert choose_backend(torch.zeros(32, 8, 4), gated_lstm) == "fused"  # the dense rule (too few samples to skip)
    assert choose_backend(torch.zeros(32, 1025, 4), gated_lstm) == "fused"  # wide: the selective loops
    wide = SparseRecurrent(4, 256, seed=0)
    assert choose_backend(torch.zeros(1, 1, 4), wide) == "reference"  # one step of a wide layer
    assert choose_backend(torch.zeros(2, 1, 4), wide) == "fused"
    wider = SparseRecurrent(4, 257, seed=0)  # past the hidden sizes the fused bound was measured on
    assert choose_backend(torch.zeros(32, 8, 4), wider) == "reference"
    gated_gru = SparseRecurrent(4, 1024, update_gate="event", seed=0)  # the selective loops take large calls
    assert choose_backend(torch.zeros(32, 1025, 4), gated_gru) == "fused"
    assert choose_backend(torch.zeros(1, 1, 4), gated_gru) == "reference"  # one step, about half open: dense rule
    sparse_gru = SparseRecurrent(4, 1024, update_gate="event", initial_update_rate=0.1, seed=0)
    assert choose_backend(torch.zeros(1, 1, 4), sparse_gru) == "fused"  # configured sparse: the selective loops


@pytest.mark.parametrize("native", ["1", "0"])
def test_auto_rule_for_routed_layers_on_cpu(native, monkeypatch):
    """With the C++ loops, a routed layer always runs them (float32 / float64); without them
    (SPARSERNN_NATIVE=0, or a dtype they do not take) the TorchScript loop for small calls,
    the compiled gathered products for wide and long ones, else the reference."""
    monkeypatch.setenv("SPARSERNN_NATIVE", native)
    routed = SparseRecurrent(4, 64, router_keep=0.1, seed=0)
    wide_routed = SparseRecurrent(4, 512, router_keep=0.1, seed=0)
    assert choose_backend(torch.zeros(32, 8, 4), routed) == "fused"
    if native == "1":
        for x in (torch.zeros(32, 256, 4), torch.zeros(16, 16, 4), torch.zeros(1, 1024, 4)):
            assert choose_backend(x, wide_routed) == choose_backend(x, routed) == "fused"
        x = torch.zeros(32, 256, 4, dtype=torch.bfloat16)
        assert choose_backend(x, routed) == "reference"  # the C++ loops take float32 / float64 only
    else:
        assert choose_backend(torch.zeros(32, 256, 4), routed) == "reference"
        assert choose_backend(torch.zeros(16, 16, 4), wide_routed) == "compiled"
        assert choose_backend(torch.zeros(15, 16, 4), wide_routed) == "reference"


def test_the_layer_applies_its_rule_and_shows_the_backend_that_ran():
    layer = SparseRecurrent(4, 64, seed=0)
    for batch, expected in ((8, "fused"), (1025, "reference")):
        x = torch.randn(2, batch, 4)
        assert layer.backend_for(x) == expected
        layer(x)
        assert (layer.last_backend, layer.last_group_size) == (expected, 1)
    pinned = SparseRecurrent(4, 64, backend="reference", seed=0)
    assert pinned.backend_for(torch.randn(2, 8, 4)) == "reference"


@pytest.mark.parametrize("backend, grouped", [("auto", True), ("fused", True), ("reference", False)])
def test_group_forward_follows_the_layers_rule(backend, grouped):
    """One batched fused loop when every layer's backend is fused, else each layer on its own;
    the same results either way, and each layer says what ran."""
    actor = SparseRecurrent(3, 6, cell="lstm", update_gate="event", backend=backend, seed=1, dtype=torch.float64)
    critic = SparseRecurrent(3, 6, cell="lstm", update_gate="event", backend=backend, seed=2, dtype=torch.float64)
    x = torch.randn(5, 4, 3, dtype=torch.float64)
    starts = (torch.rand(5, 4) < 0.3).double()
    states = [torch.randn(4, actor.state_size, dtype=torch.float64) for _ in range(2)]
    got = group_forward([actor, critic], x, states, starts)
    for layer in (actor, critic):
        assert layer.last_backend == ("fused" if grouped else "reference")
        assert layer.last_group_size == (2 if grouped else 1)
    for (y, state), layer, state0 in zip(got, (actor, critic), states):
        oracle = copy.deepcopy(layer)
        oracle.backend = "reference"
        y_ref, state_ref = oracle(x, state0, starts)
        torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(state, state_ref, rtol=1e-9, atol=1e-10)
    mixed = SparseRecurrent(3, 6, cell="lstm", update_gate="event", backend="reference", seed=3, dtype=torch.float64)
    group_forward([actor, mixed], x, states, starts)
    assert (actor.last_group_size, mixed.last_backend) == (1, "reference")
    with pytest.raises(ValueError, match="one cell, size, update gate and router"):
        group_forward([actor, SparseRecurrent(3, 6, cell="gru", seed=0, dtype=torch.float64)], x, states, starts)


def test_native_loops_are_built_and_used():
    """The C++ loops must build wherever the tests run (CI has a compiler); a failed build
    would silently fall back to the slower TorchScript loops."""
    from sparsernn.core.fused import _native_cell_entry
    from sparsernn.core.fused_loops import loop, scripted
    from sparsernn.core.native import NATIVE_FUNCTIONS, native_loops

    native = native_loops()
    assert native is not None, "building core/csrc/fused_cpu.cpp failed (see the RuntimeWarning)"
    for name in NATIVE_FUNCTIONS:
        assert loop(name, torch.zeros(1)) is getattr(native, name)
        assert loop(name, torch.zeros(1, device="meta")) is scripted(name)
        assert loop(name, torch.zeros(1, dtype=torch.float16)) is scripted(name)  # the C++ loops: float32/64
    assert loop("elman_forward", torch.zeros(1)) is scripted("elman_forward")
    assert loop("gru_forward", torch.zeros(1)) is scripted("gru_forward")  # the C++ GRU / LSTM take a group
    for entry in ("group_forward", "cell_backward"):
        for cell in ("gru", "lstm"):
            assert _native_cell_entry(cell, torch.zeros(1, 1, 1), entry) is getattr(native, f"{cell}_{entry}")
            assert _native_cell_entry(cell, torch.zeros(1, 1, 1, device="meta"), entry) is None
            assert _native_cell_entry(cell, torch.zeros(1, 1, 1, dtype=torch.bfloat16), entry) is None
        assert _native_cell_entry("elman", torch.zeros(1, 1, 1), entry) is None


@pytest.mark.parametrize("change", ["in_place", "replaced", "state_dict", "masks"])
def test_routed_loops_see_every_weight_change(change, assert_rel_close):
    """The C++ routed loops read transposed weights kept on the layer between calls: an in-place
    update (an optimiser step), a replaced parameter, load_state_dict or new masks must all be seen."""
    layer = SparseRecurrent(6, 20, router_keep=0.3, density_hh=0.5, seed=4, dtype=torch.float64, backend="fused")
    x, state, starts = random_inputs(layer, 3, steps=6, batch=3)
    with torch.no_grad():
        layer(x, state, starts)  # fills the cache
        other = SparseRecurrent(6, 20, router_keep=0.3, density_hh=0.5, seed=5, dtype=torch.float64)
        if change == "in_place":
            layer.weight_hh.add_(torch.randn_like(layer.weight_hh) * layer.mask_hh)
        elif change == "replaced":
            layer.weight_ih = torch.nn.Parameter(torch.randn_like(layer.weight_ih))
        elif change == "state_dict":
            layer.load_state_dict(other.state_dict())
        else:
            layer.mask_hh.copy_(other.mask_hh)
        y, final = layer(x, state, starts)
        layer.backend = "reference"
        y_ref, final_ref = layer(x, state, starts)
    assert_rel_close("y", y, y_ref, RTOL)
    assert_rel_close("state", final, final_ref, RTOL)


@pytest.mark.parametrize("hidden,keep", [(12, 0.25), (40, 0.1), (40, 0.4), (300, 0.05), (300, 0.5)])
def test_routed_top_k_breaks_ties_by_the_lower_index_as_the_reference(hidden, keep, loops, assert_rel_close):
    """Scores with many exact ties (the router's scale and context term zeroed, so each channel's
    score is its bias, drawn from a few values, with a -0.0 among the zeros): every selection
    strategy of the C++ top-k (direct ranks, heap, bit-by-bit threshold) must keep the channels
    the reference keeps, or the outputs differ."""
    layer = SparseRecurrent(9, hidden, router_keep=keep, seed=hidden, dtype=torch.float64, backend="reference")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(hidden)
        layer.router.scale.zero_()
        layer.router.up.zero_()
        layer.router.bias.copy_(torch.randint(-2, 3, layer.router.bias.shape, generator=gen).double())
        zeros = (layer.router.bias == 0).nonzero().flatten()
        layer.router.bias[zeros[::2]] = -0.0
    x, state, starts = random_inputs(layer, hidden, steps=5, batch=4)
    with torch.no_grad():
        y_ref, s_ref = layer(x, state, starts)
        layer.backend = "fused"
        y, s = layer(x, state, starts)
    assert_rel_close("y", y, y_ref, RTOL)
    assert_rel_close("state", s, s_ref, RTOL)


@pytest.mark.parametrize("fused_adam", [True, False])
def test_routed_acting_after_an_optimiser_step_sees_the_new_weights(fused_adam, assert_rel_close):
    """Fused Adam updates parameters without bumping their version counters: the weights the C++
    routed loops keep between no-grad calls must not outlive a training step (an RL rollout after
    an update acted on the old weights)."""
    layer = SparseRecurrent(5, 16, router_keep=0.25, seed=2, backend="fused")
    x = torch.randn(6, 3, 5)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05, fused=fused_adam)
    with torch.no_grad():
        layer(x[:1])  # an acting call keeps the transposed weights
    y, _ = layer(x)
    y.square().sum().backward()
    opt.step()
    with torch.no_grad():
        got, _ = layer(x[:1])
        layer.backend = "reference"
        expected, _ = layer(x[:1])
    assert_rel_close("y", got, expected, 1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_routed_single_sequence_matches_reference(cell, loops, assert_backend_matches_reference):
    """B = 1 (acting, streaming) takes its own product path in the C++ loops: whole kept rows of W^T."""
    layer = _layer(cell, "routed", 31, I, H, "cpu")
    x, state, starts = random_inputs(layer, 31, steps=9, batch=1)
    assert_backend_matches_reference(layer, "fused", x, state, starts, RTOL)


def test_a_built_extension_is_imported_without_ninja(monkeypatch, tmp_path):
    """A build of the same sources is reused whatever checkout asks for it: the name carries a hash of
    the sources' contents (not their paths), and an existing build is imported without running torch's
    ``load`` (whose ninja would rebuild for another path, and whose lock, left by a killed rebuild,
    blocks every later process)."""
    import shutil

    from sparsernn.core import native as native_mod

    assert native_mod.native_loops() is not None
    name = native_mod.extension_name()
    copy = tmp_path / "csrc"
    shutil.copytree(native_mod.SOURCE_DIR, copy)
    monkeypatch.setattr(native_mod, "SOURCE_DIR", copy)
    assert native_mod.extension_name() == name  # the same sources elsewhere: the same build
    (copy / "module.cpp").write_text((copy / "module.cpp").read_text() + "\n// changed\n")
    assert native_mod.extension_name() != name  # other sources: another build
    monkeypatch.setattr(native_mod, "SOURCE_DIR", native_mod.Path(native_mod.__file__).resolve().parent / "csrc")

    def refuse(*args, **kwargs):
        raise AssertionError("torch's load (ninja) was called for an extension already built")

    monkeypatch.setattr("torch.utils.cpp_extension.load", refuse)
    module = native_mod.native_loops.__wrapped__()  # the uncached function: the import itself
    assert module is not None and module.__name__ == name and hasattr(module, "selective_forward")
