"""episode_starts[t] = 1 makes the rest of the call equal a fresh call from t."""
import pytest
import torch

from sparsernn.core import SparseRecurrent


@pytest.mark.parametrize("cell, options", [
    ("lstm", {}),
    ("gru", dict(update_gate="rhythm")),
    ("elman", dict(router_keep=0.5, update_gate="event")),
])
@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_reset_inside_call_equals_fresh_call(cell, options, backend):
    layer = SparseRecurrent(4, 12, cell=cell, seed=7, backend=backend, dtype=torch.float64, **options)
    x = torch.randn(30, 3, 4, dtype=torch.float64)
    state = torch.randn(3, layer.state_size, dtype=torch.float64)
    starts = torch.zeros(30, 3, dtype=torch.float64)
    starts[17, 1] = 1.0  # only sample 1 restarts, at t = 17
    with torch.no_grad():
        y, final = layer(x, state, starts)
        y_fresh, final_fresh = layer(x[17:, 1:2])
        y_cont, _ = layer(x[:, [0, 2]], state[[0, 2]])
    torch.testing.assert_close(y[17:, 1:2], y_fresh, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final[1:2], final_fresh, rtol=1e-12, atol=1e-12)
    # the other samples are untouched by sample 1's reset
    torch.testing.assert_close(y[:, [0, 2]], y_cont, rtol=1e-12, atol=1e-12)
    # and before t the reset sample followed its given state
    assert not torch.allclose(y[16, 1], layer(x[16:17, 1:2])[0][0].detach())


def test_split_calls_equal_one_call():
    """Carrying the state between calls (acting, T = 1) equals one long call."""
    layer = SparseRecurrent(3, 9, cell="lstm", update_gate="rhythm", router_keep=0.5, seed=1,
                            backend="reference", dtype=torch.float64)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        y_all, s_all = layer(x)
        state, ys = None, []
        for t in range(12):
            y_t, state = layer(x[t:t + 1], state)
            ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys), y_all, rtol=0, atol=0)
    torch.testing.assert_close(state, s_all, rtol=0, atol=0)
