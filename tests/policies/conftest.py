"""Helpers of the policy tests."""
import numpy as np


def rollout(predictor, obs, steps: int):
    """Deterministic actions ``(steps, n_envs, ...)`` and the final state of ``steps`` predictions
    from ``obs`` by a model or policy (anything with SB3's ``predict``), starting new episodes."""
    state, starts, actions = None, np.ones(obs.shape[0], dtype=bool), []
    for _ in range(steps):
        action, state = predictor.predict(obs, state, starts, deterministic=True)
        actions.append(action)
        starts = np.zeros_like(starts)
    return np.stack(actions), state
