"""``SparsityLoggerCallback``: the core layers' statistics in SB3's logger (and so in TensorBoard)."""
from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback


class SparsityLoggerCallback(BaseCallback):
    """Record the policy's recurrent-layer statistics and auxiliary loss with SB3's logger.

    After each PPO update (at the start of the next rollout) it records, under
    ``sparsity/``, each layer's realised densities, hidden proportion, active
    input / hidden fractions and update rate on the update's last minibatch
    (keys ``sparsity/<actor|critic>/<name>``), and ``sparsity/aux_loss``. SB3
    writes them with the ``train/`` values of that update. Policies without
    ``statistics()`` (stock LSTM, MLP) are skipped silently, so the callback
    can be attached to any run.

    Parameters
    ----------
    verbose : int
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._last_logged_update = 0

    def _on_rollout_start(self) -> None:
        policy = self.model.policy
        n_updates = getattr(self.model, "_n_updates", 0)
        if not hasattr(policy, "statistics") or n_updates == self._last_logged_update:
            return
        self._last_logged_update = n_updates
        for key, value in policy.statistics().items():
            self.logger.record(f"sparsity/{key}", value)
        self.logger.record("sparsity/aux_loss", float(policy.aux_loss().detach()))

    def _on_step(self) -> bool:
        return True
