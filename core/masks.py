"""Static block-sparsity masks: drawn once from a seed, exact nonzero count."""
from __future__ import annotations

import torch


def nonzero_count(numel: int, density: float) -> int:
    """Number of kept entries of a block of ``numel`` weights at ``density``.

    ``round(density * numel)``, at least 1: the count of trainable unknowns is
    exact and known before the mask is drawn.
    """
    return max(1, min(numel, int(round(density * numel))))


def random_block_mask(shape: tuple[int, int], density: float, generator: torch.Generator) -> torch.Tensor:
    """A boolean mask of ``shape`` with exactly ``nonzero_count(numel, density)`` True entries.

    Parameters
    ----------
    shape : (rows, cols)
    density : float in (0, 1]; 1.0 gives an all-True mask.
    generator : the CPU generator the positions are drawn from.

    Returns
    -------
    mask : bool tensor of shape ``shape`` (on the CPU).
    """
    numel = shape[0] * shape[1]
    keep = nonzero_count(numel, density)
    mask = torch.zeros(numel, dtype=torch.bool)
    if keep == numel:
        mask[:] = True
    else:
        mask[torch.randperm(numel, generator=generator)[:keep]] = True
    return mask.view(shape)
