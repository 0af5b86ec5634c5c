"""Property-based shape fuzzing of the reference layer (the compiled path is
compared with it in test_backend_equivalence)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsernn.core import SparseRecurrent


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 9), B=st.integers(1, 5), I=st.integers(1, 7), H=st.integers(1, 13),
    cell=st.sampled_from(["lstm", "gru", "elman"]),
    density=st.floats(0.05, 1.0), keep=st.one_of(st.none(), st.floats(0.05, 1.0)),
    gate=st.sampled_from([None, "rhythm", "event"]), with_state=st.booleans(), with_starts=st.booleans(),
)
def test_shapes_and_finiteness(T, B, I, H, cell, density, keep, gate, with_state, with_starts):
    layer = SparseRecurrent(I, H, cell=cell, density_ih=density, density_hh=density, router_keep=keep,
                            update_gate=gate, seed=0, backend="reference")
    x = torch.randn(T, B, I)
    state = torch.randn(B, layer.state_size) if with_state else None
    starts = (torch.rand(T, B) < 0.3).float() if with_starts else None
    y, final = layer(x, state, starts)
    assert y.shape == (T, B, H)
    assert final.shape == (B, layer.state_size)
    assert torch.isfinite(y).all() and torch.isfinite(final).all()
    assert torch.equal(y[-1], layer.unpack_state(final)[0])
    stats = layer.statistics()
    assert set(stats) == {"density_ih", "density_hh", "hidden_proportion", "active_input_fraction",
                          "active_hidden_fraction", "update_rate", "computed_fraction"}
    assert all(0.0 <= v <= 1.0 for v in stats.values())
