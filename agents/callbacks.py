"""``SparsityLoggerCallback``: the core layers' statistics in SB3's logger (and so in TensorBoard)."""
from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

#: SB3 output formats that cannot show an array (they would print it whole): histograms go to TensorBoard only.
_NOT_HISTOGRAMS = ("stdout", "log", "json", "csv")


class SparsityLoggerCallback(BaseCallback):
    """Record the policy's recurrent-layer statistics and auxiliary loss with SB3's logger.

    After each PPO update (at the start of the next rollout) it records, under
    ``sparsity/``, each layer's realised densities, hidden proportion, active
    input / hidden fractions, update rate and computed fraction on the update's last minibatch
    (keys ``sparsity/<actor|critic>/<name>``), and ``sparsity/aux_loss``. SB3
    writes them with the ``train/`` values of that update.

    For a routed layer whose backend records its selections (the ``fused`` backend,
    ``SparseRecurrent.channel_usage``), the active fractions are the realised ones (channels kept
    per step and sample, averaged over the minibatch; equal to ``keep_count / width`` when the
    budget holds), and it also records, from the same minibatch:

    - ``sparsity/<role>/hidden_usage`` and ``sparsity/<role>/input_usage``: histograms (TensorBoard
      only) over the channels of each channel's keep share, the fraction of (step, sample) rows
      that kept it: a spike at the budget means balanced use, mass at 0 and 1 means a few channels
      take every slot;
    - ``sparsity/<role>/unused_hidden_fraction`` and ``.../unused_input_fraction``: the share of
      channels that no row kept.

    For a gated layer (``update_gate``), ``sparsity/<role>/update_rate`` is the realised share of
    open (step, sample, neuron) switches and ``sparsity/<role>/computed_fraction`` the share of
    candidates its backend computed (1.0 where every candidate is computed), and from the same
    minibatch (``SparseRecurrent.update_usage``):

    - ``sparsity/<role>/neuron_update_rate``: a histogram (TensorBoard only) over the neurons of each
      neuron's open share, the fraction of (step, sample) pairs at which its switch was open;
    - ``sparsity/<role>/never_open_fraction``: the share of neurons open at no pair.

    Policies without ``statistics()`` (stock LSTM, MLP) are skipped silently, so the callback
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
        usage = policy.channel_usage() if hasattr(policy, "channel_usage") else {}
        for key, shares in usage.items():  # key: "<role>/<input|hidden>"
            self.logger.record(f"sparsity/{key}_usage", shares.float().cpu().numpy(), exclude=_NOT_HISTOGRAMS)
            self.logger.record(f"sparsity/{key.replace('/', '/unused_')}_fraction", float((shares == 0).double().mean()))
        updates = policy.update_usage() if hasattr(policy, "update_usage") else {}
        for role, shares in updates.items():
            self.logger.record(f"sparsity/{role}/neuron_update_rate", shares.float().cpu().numpy(),
                               exclude=_NOT_HISTOGRAMS)
            self.logger.record(f"sparsity/{role}/never_open_fraction", float((shares == 0).double().mean()))
        self.logger.record("sparsity/aux_loss", float(policy.aux_loss().detach()))

    def _on_step(self) -> bool:
        return True


class RouterKeepAnnealCallback(BaseCallback):
    """Anneal the routed layers' budget from 1.0 (dense) to their ``router_keep`` over the first part of training.

    Before each rollout, with ``p = num_timesteps / total_timesteps`` of the ``learn`` call
    (resumed runs count their earlier steps), every routed layer of the policy gets
    ``keep(p) = target + (1 - target) * (1 - p / fraction)`` per side, through
    ``SparseRecurrent.set_router_keep``; from ``p >= fraction`` on (and at the end of
    training, whatever ``fraction``) it gets the target itself, so the final budget is
    exactly ``router_keep``. A rollout and the PPO update after it use the same keep.
    Policies without routed layers are left alone. The realised budget is logged by
    :class:`SparsityLoggerCallback` (``sparsity/<role>/active_hidden_fraction``).

    Parameters
    ----------
    fraction : float in (0, 1]
        Share of the training steps over which the keep is annealed.
    verbose : int
    """

    def __init__(self, fraction: float, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1]; got {fraction!r}")
        self.fraction = float(fraction)
        self.targets: dict = {}

    def _routed_layers(self) -> dict:
        layers = getattr(self.model.policy, "recurrent_layers", None)
        if layers is None:
            return {}
        return {name: layer for name, layer in layers.items() if layer.router_keep is not None}

    def _on_training_start(self) -> None:
        self.targets = {name: layer.router_keep for name, layer in self._routed_layers().items()}
        self._apply()

    def _on_rollout_start(self) -> None:
        self._apply()

    def _on_training_end(self) -> None:
        self._apply(done=True)

    def keep_at(self, target: tuple[float, float], progress: float) -> tuple[float, float]:
        """The keep pair at training progress ``progress`` in [0, 1] for the final ``target`` pair."""
        if progress >= self.fraction:
            return target
        left = 1.0 - progress / self.fraction
        return tuple(min(1.0, t + (1.0 - t) * left) for t in target)

    def _apply(self, done: bool = False) -> None:
        total = max(getattr(self.model, "_total_timesteps", 0), 1)
        progress = 1.0 if done else self.model.num_timesteps / total
        for name, layer in self._routed_layers().items():
            layer.set_router_keep(self.keep_at(self.targets[name], progress))

    def _on_step(self) -> bool:
        return True
