"""Shared checks of the agents tests."""
import copy

import pytest
from sb3_contrib import RecurrentPPO


def _same_update_as_sb3_contrib(model, stock_buffer, grad_rtol: float = 1e-4):
    """Run ``model.train()`` on its own rollout buffer, then sb3-contrib's ``RecurrentPPO.train`` on
    ``stock_buffer`` (the same rollout in sb3-contrib's padded buffer) from the same parameters and optimiser
    state; assert the two gradients agree (relative norm < ``grad_rtol``: float32 sums in another order).

    Returns our update's ``(state_dict after, gradients)``; the model is left after sb3-contrib's update.
    """
    start = copy.deepcopy((model.policy.state_dict(), model.policy.optimizer.state_dict()))
    model.train()
    after_ours = copy.deepcopy(model.policy.state_dict())
    grads_ours = {name: p.grad.clone() for name, p in model.policy.named_parameters() if p.grad is not None}
    model.policy.load_state_dict(start[0])
    model.policy.optimizer.load_state_dict(start[1])
    model.rollout_buffer = stock_buffer
    RecurrentPPO.train(model)
    grads_stock = {name: p.grad for name, p in model.policy.named_parameters() if p.grad is not None}
    assert grads_ours.keys() == grads_stock.keys()
    for name, grad in grads_stock.items():
        error = (grads_ours[name] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert error < grad_rtol, f"grad {name}: relative difference {error:.2e} between the two updates"
    assert any(name.startswith("lstm_actor") and grad.norm() > 0 for name, grad in grads_ours.items()), \
        "the update did not reach the recurrent layer"
    return after_ours, grads_ours


@pytest.fixture
def same_update_as_sb3_contrib():
    """:func:`_same_update_as_sb3_contrib`."""
    return _same_update_as_sb3_contrib
