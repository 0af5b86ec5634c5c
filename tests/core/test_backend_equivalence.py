"""The compiled backend against the reference oracle: outputs, final state and
every gradient, for every cell x {dense, block-sparse, routed, gated, all three},
on fresh random inputs and odd sizes, with ordinary and with extreme finite inputs,
on every device (``device`` fixture: CPU, and CUDA where present)."""
import zlib

import pytest
import torch

from sparsernn.core import SparseRecurrent

from .conftest import extreme_sequence, random_sequence

CONFIGS = {
    "dense": {},
    "block_sparse": dict(density_ih=0.5, density_hh=0.1),
    "routed": dict(router_keep=(0.4, 0.1), router_balance_weight=0.1),
    "gated": dict(update_gate="rhythm", target_update_rate=0.3),
    "all_three": dict(density_ih=0.3, density_hh=0.25, router_keep=0.25, update_gate="event",
                      target_update_rate=0.5, router_balance_weight=0.05),
    "event_always_open": dict(update_gate="event", always_open_fraction=0.25, target_update_rate=0.4,
                              update_rate_mode="set_point"),
}
T, B, I, H = 63, 5, 11, 97
RTOL = 1e-9  # float64; a wrong kernel is off by >1e-3


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_compiled_matches_reference(cell, config, device, assert_backend_matches_reference):
    seed = zlib.crc32(f"{cell}-{config}".encode()) % 10_000  # hash() of str changes per process
    layer = SparseRecurrent(I, H, cell=cell, seed=seed, dtype=torch.float64, backend="reference", device=device,
                            **CONFIGS[config])
    x, state, starts = random_sequence(layer, seed, T, B, reset_rate=0.05)
    assert_backend_matches_reference(layer, "compiled", x, state, starts, RTOL)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_compiled_matches_reference_on_extreme_inputs(cell, config, device, assert_backend_matches_reference):
    """Spikes of +-500, +-1e4 and +-1e30 among ordinary inputs: every sigmoid / tanh saturates;
    outputs, final state and every gradient stay finite and equal to the reference's."""
    seed = 1 + zlib.crc32(f"{cell}-{config}".encode()) % 10_000
    layer = SparseRecurrent(5, 13, cell=cell, seed=seed, dtype=torch.float64, backend="reference", device=device,
                            **CONFIGS[config])
    x, state, starts = extreme_sequence(layer, seed, 17, 3, reset_rate=0.05)
    assert_backend_matches_reference(layer, "compiled", x, state, starts, RTOL)


@pytest.mark.parametrize("spike", [500.0, 1e30, -1e30])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_compiled_float32_spike_stays_finite_and_equal_to_reference(cell, spike, device,
                                                                    assert_backend_matches_reference):
    """The issue's float32 case on the compiled steps (inductor builds without finite-math-only)."""
    layer = SparseRecurrent(1, 8, cell=cell, seed=0, device=device)
    x = torch.linspace(-1, 1, 12).view(6, 2, 1).to(device)
    x[2, 0, 0] = spike
    assert_backend_matches_reference(layer, "compiled", x, layer.initial_state(2), None, 1e-4)


def test_compiled_without_grad_and_without_state_matches_reference(device, assert_rel_close):
    layer = SparseRecurrent(6, 17, cell="gru", router_keep=0.3, update_gate="rhythm", seed=3, dtype=torch.float64,
                            device=device)
    x = torch.randn(20, 4, 6, dtype=torch.float64).to(device)
    with torch.no_grad():
        layer.backend = "reference"
        y_ref, s_ref = layer(x)
        layer.backend = "compiled"
        y, s = layer(x)
    assert_rel_close("y", y, y_ref, RTOL)
    assert_rel_close("state", s, s_ref, RTOL)


def test_auto_backend_rule_is_visible():
    dense = SparseRecurrent(3, 8, backend="auto", seed=0)
    routed = SparseRecurrent(3, 512, router_keep=0.1, backend="auto", seed=0)
    with torch.no_grad():
        dense(torch.randn(32, 2, 3))
        assert dense.last_backend == "fused"  # CPU, small unrouted call: the fused backend
        for shape in ((1, 2, 3), (1, 16, 3), (16, 16, 3)):
            routed(torch.randn(*shape))
            assert routed.last_backend == "fused"  # on a CPU the C++ routed loops, whatever the shape


@pytest.mark.parametrize("backend", ["reference", "compiled", "fused", "auto"])
def test_each_backend_runs_on_each_device(backend, device):
    """Smoke test per backend and device: a gated, block-sparse GRU with resets runs forward and
    backward there, finite, and says which backend ran (``auto``: ``compiled`` on CUDA)."""
    layer = SparseRecurrent(4, 9, density_hh=0.5, update_gate="event", seed=0, dtype=torch.float64, device=device,
                            backend=backend)
    x, state, starts = random_sequence(layer, 0, 7, 3, reset_rate=0.2)
    x.requires_grad_(True)
    y, final = layer(x, state, starts)
    (y.sum() + final.square().sum() + layer.aux_loss()).backward()
    assert y.device == final.device == x.grad.device == layer.weight_hh.grad.device
    assert all(torch.isfinite(t).all() for t in (y, final, x.grad, layer.weight_hh.grad))
    expected = {"auto": "compiled" if device.type == "cuda" else "fused"}.get(backend, backend)
    assert layer.last_backend == expected
