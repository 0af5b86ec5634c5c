#!/usr/bin/env python
"""Where the time of the skipping inference kernel goes, for many streams (issue 13).

Times, per stream and step, on a fresh gated layer (``initial_update_rate``) and
random inputs of unit variance::

    python scripts/profile_stream_kernel.py --hidden-size 32 --update-rate 0.1

1. the switch alone (``infer_skip.open_neurons`` for every stream and step);
2. the kernel with no neuron open: the switch, the copy of ``[u, h, 1]`` and
   the read-out (``infer_skip.advance_open`` with ``n_open = 0``);
3. the whole skipping kernel (``infer_skip.run_block``, one stream at a time);
4. the neuron-major skipping kernel (``infer_skip_nm.run_block_nm``, chunks of streams);
5. the torch block loop (``TorchBlockStepper``), which computes every neuron.

Each figure is the best of ``--repeats`` rounds, the five taking turns; the
share of (stream, neuron) pairs open over the run is printed beside them.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from numba import njit

from sparsernn.core import GaussianReadout, SparseRecurrent, step_weights
from sparsernn.core import infer_skip, infer_skip_nm
from sparsernn.core.infer_numba import CELL_CODES, GATE_CODES
from sparsernn.core.infer_torch import TorchBlockStepper


@njit(cache=True, fastmath=infer_skip.FASTMATH)
def _switch_only(gate_w, rhythm, gate, u, state):
    H = gate_w.shape[1] if gate == 1 else rhythm.shape[0]
    a, idx = np.empty(H, np.float32), np.empty(H, np.int64)
    total = 0
    for t in range(u.shape[0]):
        for b in range(u.shape[1]):
            total += infer_skip.open_neurons(u[t, b], state[b], gate_w, rhythm, gate, H, a, idx)
    return total


@njit(cache=True, fastmath=infer_skip.FASTMATH)
def _none_open(rows, head, consts, cell, gate, u, state, mean, var):
    H, P = rows.shape[0], rows.shape[2]
    v, pre, idx = np.empty(P, np.float32), np.empty((4, H), np.float32), np.empty(H, np.int64)
    for t in range(u.shape[0]):
        for b in range(u.shape[1]):
            infer_skip.advance_open(u[t, b], state[b], mean[t, b], var[t, b], rows, head, consts, cell, gate, idx, 0,
                                    v, pre)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--cell", choices=sorted(CELL_CODES), default="gru")
    parser.add_argument("--update-gate", choices=["event", "rhythm"], default="event")
    parser.add_argument("--update-rate", type=float, default=0.1, help="initial_update_rate of the layer")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    H, B, T = args.hidden_size, args.streams, args.steps
    layer = SparseRecurrent(1, H, cell=args.cell, update_gate=args.update_gate,
                            initial_update_rate=args.update_rate, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    readout = GaussianReadout(0.3 * torch.randn(2, H + 1, generator=gen), torch.zeros(2), (-12.0, 8.0), 1e-3)
    weights = step_weights(layer)
    rows, gate_w, rhythm, head, consts = infer_skip.model_arrays(weights, readout)
    cell, gate = CELL_CODES[args.cell], GATE_CODES[args.update_gate]
    u = torch.randn(T, B, 1, generator=gen)
    state = torch.zeros(B, layer.state_size)
    u_np, state_np = u.numpy(), state.numpy()
    mean, var = np.empty((T, B, 1), np.float32), np.empty((T, B, 1), np.float32)
    torch_loop = TorchBlockStepper(weights, readout)
    parts = {
        "switch only": lambda: _switch_only(gate_w, rhythm, gate, u_np, state_np.copy()),
        "switch + [u, h, 1] + read-out, no neuron open":
            lambda: _none_open(rows, head, consts, cell, gate, u_np, state_np.copy(), mean, var),
        "skipping kernel (infer_skip.run_block)":
            lambda: infer_skip.run_block(rows, gate_w, rhythm, head, consts, cell, gate, u_np, state_np.copy(), mean,
                                         var),
        "neuron-major skipping kernel (infer_skip_nm)":
            lambda: infer_skip_nm.run_block_nm(rows, gate_w, rhythm, head, consts, cell, gate, u_np, state_np.copy(),
                                               mean, var),
        "torch block loop, every neuron": lambda: torch_loop.run(u, state),
    }
    for run in parts.values():  # compile / warm up
        run()
    best = dict.fromkeys(parts, float("inf"))
    for _ in range(args.repeats):
        for name, run in parts.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    with torch.no_grad():
        layer(u, state)
    print(f"hidden {H}, {args.cell} + {args.update_gate}, initial rate {args.update_rate:g} (realised "
          f"{layer.statistics()['update_rate']:.3f}), {B} streams x {T} steps; ns per stream and step:")
    for name, seconds in best.items():
        print(f"  {name:50s} {seconds / (B * T) * 1e9:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
