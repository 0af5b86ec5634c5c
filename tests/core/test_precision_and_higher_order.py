"""Half precision (float16, bfloat16) on every backend against the float32 reference, and
second-order gradients: correct on the reference backend, a clear error on the fused and
compiled ones (never a silent ``None``)."""
import copy

import pytest
import torch
from torch.autograd import gradgradcheck
from torch.func import functional_call

from sparsernn.core import SparseRecurrent

from .conftest import relative_error

CELLS = ["lstm", "gru", "elman"]
#: Relative error (on the whole tensor) of a half-precision run against float32: a few of the
#: format's epsilons (float16 ~1e-3, bfloat16 ~8e-3) after a short recurrence; a wrong kernel
#: is off by O(1).
HALF_RTOL = {torch.float16: 1e-2, torch.bfloat16: 6e-2}


def _run(layer, x):
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y, final = layer(x)
    (y.float().sum() + final.float().square().sum()).backward()
    return y, final, {"x": x.grad, **{name: p.grad for name, p in layer.named_parameters()}}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", ["auto", "fused", "reference"])
@pytest.mark.parametrize("options", [dict(cell="lstm"), dict(cell="gru", density_hh=0.3), dict(cell="elman"),
                                     dict(cell="gru", router_keep=(1.0, 0.5))], ids=lambda o: str(list(o.values())))
def test_half_precision_matches_the_float32_reference(options, backend, dtype, device):
    reference = SparseRecurrent(3, 8, seed=0, backend="reference", device=device, **options)
    layer = copy.deepcopy(reference).to(dtype)
    layer.backend = backend
    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1)).to(device)
    y_ref, final_ref, grads_ref = _run(reference, x)
    y, final, grads = _run(layer, x.to(dtype))
    assert y.dtype == final.dtype == dtype
    rtol = HALF_RTOL[dtype]
    for name, got, want in [("y", y, y_ref), ("final", final, final_ref)] + [
            (f"grad {k}", grads[k], g) for k, g in grads_ref.items() if g is not None]:
        assert got is not None and got.dtype == dtype, name
        assert torch.isfinite(got).all(), f"{name}: non-finite"
        assert relative_error(got, want) <= rtol, f"{name}: relative error {relative_error(got, want):.2e}"


def test_compiled_runs_half_precision(device):
    reference = SparseRecurrent(3, 8, cell="gru", seed=0, backend="reference", device=device)
    layer = copy.deepcopy(reference).to(torch.bfloat16)
    layer.backend = "compiled"
    x = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(1)).to(device)
    y_ref, _, _ = _run(reference, x)
    y, _, grads = _run(layer, x.to(torch.bfloat16))
    assert relative_error(y, y_ref) <= HALF_RTOL[torch.bfloat16]
    assert grads["weight_hh"] is not None and torch.isfinite(grads["weight_hh"]).all()


@pytest.mark.parametrize("cell", CELLS)
def test_reference_second_order_gradients_are_correct(cell):
    """gradgradcheck: the reference's second derivatives (in x and both weight blocks) match
    finite differences of its first derivatives (float64, a tiny sparse layer with resets)."""
    layer = SparseRecurrent(2, 3, cell=cell, density_hh=0.5, seed=0, dtype=torch.float64, backend="reference")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    starts = torch.tensor([[0, 0], [1, 0], [0, 0]], dtype=torch.float64)
    w_ih = layer.weight_ih.detach().clone().requires_grad_(True)
    w_hh = layer.weight_hh.detach().clone().requires_grad_(True)

    def outputs(x, w_ih, w_hh):
        y, final = functional_call(layer, {"weight_ih": w_ih, "weight_hh": w_hh}, (x, None, starts))
        return y, final

    assert gradgradcheck(outputs, (x, w_ih, w_hh))


def _second_order(layer, x):
    """d/dW_hh of ||dL/dW_hh||^2 through ``autograd.grad(create_graph=True)``."""
    y, _ = layer(x)
    (g,) = torch.autograd.grad(y.square().sum(), layer.weight_hh, create_graph=True)
    layer.zero_grad(set_to_none=True)
    g.square().sum().backward()
    return layer.weight_hh.grad


FAST_BACKEND_CASES = [("fused", dict(cell="gru")), ("fused", dict(cell="lstm", update_gate="event")),
                      ("fused", dict(cell="elman")), ("fused", dict(cell="gru", router_keep=0.5)),
                      ("compiled", dict(cell="gru"))]  # compiled: one configuration (each compiles for ~30 s)


@pytest.mark.parametrize("backend, options", FAST_BACKEND_CASES, ids=lambda v: str(v))
def test_fast_backends_refuse_double_backward_clearly(backend, options):
    layer = SparseRecurrent(3, 5, seed=0, dtype=torch.float64, backend="reference", **options)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert _second_order(layer, x) is not None  # the reference computes them
    layer.backend = backend
    with pytest.raises(RuntimeError, match=rf"backend='{backend}' does not support double backward.*"
                                           r"backend='reference'"):
        _second_order(layer, x)
    layer.zero_grad(set_to_none=True)
    layer(x)[0].sum().backward()  # first-order gradients still work
    assert layer.weight_hh.grad is not None
