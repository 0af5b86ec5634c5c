"""rl-zoo3 with ``SparseRecurrentPPO``: ``python -m sparsernn.agents.zoo <rl_zoo3.train arguments>``.

Examples::

    python -m sparsernn.agents.zoo --algo sparse_ppo --env sparsernn/CartPoleNoVel-v1 -n 20000
    python -m sparsernn.agents.zoo --algo sparse_ppo --env sparsernn/CartPoleNoVel-v1 -n 20000 \\
        -optimize --n-trials 20 --n-jobs 1 --sampler tpe --pruner median --n-evaluations 4 \\
        --storage sqlite:///runs/zoo.db --study-name cartpole-novel

Why an entry point of our own and not ``python -m rl_zoo3.train --gym-packages ...``:
``rl_zoo3.train`` builds its parser with ``--algo``'s choices fixed to
``list(ALGOS)`` and imports ``--gym-packages`` only *after* parsing, so an
algorithm registered by a gym package is refused before the package is imported
(checked on rl-zoo3 2.9.2). This module registers first (:func:`register`), then
runs rl-zoo3's own ``train()`` unchanged: every rl-zoo3 flag works as documented
there (``-optimize``, ``--storage``, ``--study-name``, ``--n-trials``, ``--n-jobs``,
``--sampler``, ``--pruner``, ``--trial-id``, ``-params``, ``-conf``, ...).

What :func:`register` adds to rl-zoo3's module-level tables (the same dict objects
``rl_zoo3.train`` and ``rl_zoo3.exp_manager`` read):

- ``rl_zoo3.utils.ALGOS``: ``sparse_ppo`` and ``sparse_ppo_budget``, both
  :class:`~sparsernn.agents.SparseRecurrentPPO`, whose ``policy_aliases`` hold
  ``SparseRecurrentPolicy`` (and sb3-contrib's ``MlpLstmPolicy``, ...);
- ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER``: the
  samplers of :mod:`sparsernn.agents.sweep_space` (``sparse_ppo``: the layer given
  directly; ``sparse_ppo_budget``: by ``(param_budget, hidden_proportion)``).

rl-zoo3 reads ``hyperparams/<algo>.yml`` from its own package folder; ours ships in
this package (:data:`HYPERPARAMS`) and is passed as ``-conf`` unless one is given.
Importing this module also registers the ``sparsernn/`` env ids, so
``--gym-packages sparsernn.envs`` is accepted but not needed.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .ppo import SparseRecurrentPPO
from .sweep_space import ZOO_ALGO, convert, sample_sparse_ppo_budget_params, sample_sparse_ppo_params

#: Our rl-zoo3 hyperparameters (rl-zoo3's YAML format), one entry per ``sparsernn/`` env id.
HYPERPARAMS = Path(__file__).resolve().parent / "hyperparams" / f"{ZOO_ALGO}.yml"
#: rl-zoo3 algorithm names -> (sampler, converter).
ZOO_ALGOS = {ZOO_ALGO: (sample_sparse_ppo_params, convert),
             f"{ZOO_ALGO}_budget": (sample_sparse_ppo_budget_params, convert)}


def register() -> tuple[str, ...]:
    """Add our algorithms to rl-zoo3's tables (idempotent); returns their names."""
    import sparsernn.envs  # noqa: F401  (registers the sparsernn/ ids)
    from rl_zoo3 import hyperparams_opt, utils

    for name, (sampler, converter) in ZOO_ALGOS.items():
        utils.ALGOS[name] = SparseRecurrentPPO
        hyperparams_opt.HYPERPARAMS_SAMPLER[name] = sampler
        hyperparams_opt.HYPERPARAMS_CONVERTER[name] = converter
    return tuple(ZOO_ALGOS)


def zoo_argv(argv: list[str]) -> list[str]:
    """``argv`` with ``-conf HYPERPARAMS`` added when the algorithm is ours and no ``-conf`` is given."""
    argv = list(argv)
    algo = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--algo"), None)
    algo = algo or next((a.split("=", 1)[1] for a in argv if a.startswith("--algo=")), None)
    has_conf = any(a in ("-conf", "--conf-file") or a.startswith("--conf-file=") for a in argv)
    if algo in ZOO_ALGOS and not has_conf:
        argv += ["-conf", str(HYPERPARAMS)]
    return argv


def main(argv: list[str] | None = None) -> None:
    """Register, then run ``rl_zoo3.train.train()`` on ``argv`` (default ``sys.argv[1:]``)."""
    register()
    from rl_zoo3.train import train

    argv = zoo_argv(sys.argv[1:] if argv is None else argv)
    saved = sys.argv
    sys.argv = [f"{sys.executable} -m sparsernn.agents.zoo", *argv]
    try:
        train()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
