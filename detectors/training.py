"""Training the forecaster: random windows of the series, Gaussian NLL, Adam.

Each optimisation step draws ``batch_size`` windows of ``window`` consecutive
normalised observations (truncated back-propagation through time), runs the
layer from the zero state, and scores the forecasts of steps after the first
``burn_in`` rows, so the model learns to forecast from a state that has seen
some history — as it always has when streaming. Under the rhythm gate a window
starts at its own row's time index, the clock it has when the series streams. The loss adds the layer's
``aux_loss()`` (update-rate target, router balance). Gradients are clipped to
norm 1.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .forecaster import GaussianForecaster
from .horizons import horizon_nll


def training_windows(u: torch.Tensor, starts: torch.Tensor, window: int) -> torch.Tensor:
    """Windows ``u[s : s + window]`` for each start, time-major: ``(window, len(starts), d)``."""
    offsets = torch.arange(window).unsqueeze(1) + starts.unsqueeze(0)
    return u[offsets.to(u.device)]


def window_state(model: GaussianForecaster, starts: torch.Tensor, u: torch.Tensor) -> torch.Tensor | None:
    """The state each training window starts from: zeros, and for the rhythm gate the time index of
    the window's first row (its row in the series), so the rhythm is trained on the series' clock
    as it streams (a stream's time index is its row from the series' start). None: zeros."""
    layer = model.layer
    if layer.update_gate != "rhythm":
        return None
    return layer.initial_state(len(starts), time=starts.to(u.device))


def train_forecaster(model: GaussianForecaster, u: torch.Tensor, *, window: int, burn_in: int, batch_size: int,
                     n_steps: int, learning_rate: float, seed: int, progress: bool = True,
                     log_dir: str | None = None) -> list[float]:
    """Fit ``model`` to the normalised series ``u`` of shape (n_timestamps, n_channels).

    Parameters
    ----------
    model : GaussianForecaster
    u : tensor of shape (n_timestamps, n_channels)
    window, burn_in : int
        Window length, and leading rows of each window whose forecasts are not
        scored (clipped so that at least one forecast is). ``window`` is
        clipped to ``n_timestamps``.
    batch_size, n_steps : int
        Windows per step; optimisation steps.
    learning_rate : float
        Adam's step size.
    seed : int
        Seeds the draw of windows.
    progress : bool
        Show a tqdm progress bar.
    log_dir : str, optional
        Write TensorBoard scalars (loss, layer statistics) there.

    Returns
    -------
    list of float
        The loss of every step.
    """
    n = u.shape[0]
    window = min(window, n)
    burn_in = min(burn_in, window - 2)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir)
    losses = []
    model.train()
    bar = tqdm(range(n_steps), desc="fit forecaster", unit="step", disable=not progress, leave=False)
    try:
        for step in bar:
            starts = torch.randint(0, n - window + 1, (batch_size,), generator=gen)
            batch = training_windows(u, starts, window)
            mean, var, _ = model(batch, window_state(model, starts, u))
            loss = horizon_nll(batch, mean, var, burn_in, model.horizon)
            total = loss + model.layer.aux_loss()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(nll=f"{losses[-1]:.3f}")
            if writer is not None:
                writer.add_scalar("train/nll", losses[-1], step)
                writer.add_scalar("train/aux_loss", total.item() - losses[-1], step)
                for name, value in model.layer.statistics().items():
                    if isinstance(value, (int, float)):
                        writer.add_scalar(f"layer/{name}", value, step)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    model.eval()
    return losses
