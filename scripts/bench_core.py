"""Speed of ``SparseRecurrent`` (each backend) against ``torch.nn.GRU`` / ``nn.LSTM``.

Forward (no grad) and forward+backward of one (T, B, I) sequence, for hidden
sizes H, at static density d (density_ih = density_hh = d) and at router keep
k (input and hidden), all measured in the same run. Ratios are
``time(nn.GRU dense) / time(ours)``: above 1 means faster than nn.GRU. For
routed layers it also prints ``time(same layer dense) / time(routed)`` (the
same backend, ``keep=1``) and, with ``--step``, the time of one acting /
streaming step (T=1, B=``--step-batch``, no grad) of the dense and the routed
layer on the ``auto`` backend. With ``--update-rates``, it adds rhythm- and
event-gated layers whose switches open that share of neurons
(``initial_update_rate``) and prints ``time(same layer, gate off) / time(gated)``
with the realised update rate and the share of candidates computed.

Example::

    python scripts/bench_core.py --json out/bench_core.json
    python scripts/bench_core.py --hidden 256 --backends compiled --repeats 3   # quick
    python scripts/bench_core.py --T 32 --B 8 --I 4 --hidden 64 --fractions 1 0.1   # RL's shapes
    python scripts/bench_core.py --T 32 --B 64 --I 64 --hidden 1024 --fractions 1 0.1 --backends fused \
        --threads 1 --step   # routed vs dense (issue 12's targets)
    python scripts/bench_core.py --T 32 --B 64 --I 64 --hidden 1024 --fractions 1 --backends fused \
        --threads 1 --update-rates 1 0.5 0.1   # gated vs gate off (issue 13's targets)
    python scripts/bench_core.py --T 32 --B 64 --I 64 --hidden 1024 --fractions 1 --backends reference fused \
        --threads 1 --update-rates 1 0.5 0.1 --repeats 3 --cell lstm   # the same for the LSTM (or elman)

``--cell`` sets the cell of the density, keep and update-rate rows (default ``gru``; the ``nn.GRU`` and
``nn.LSTM`` rows are always there, and the GRU's extra ``event-gated`` / ``lstm dense`` rows only with ``gru``).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from sparsernn.benchmarking import machine_info, time_call, write_json
from sparsernn.core import SparseRecurrent


def measure(module, x: torch.Tensor, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(forward ms, forward+backward ms) of ``module`` on ``x``: medians of ``repeats`` after ``warmup``."""
    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        y, _ = module(x)
        y.sum().backward()

    return time_call(forward, repeats, warmup), time_call(forward_backward, repeats, warmup)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=128)
    parser.add_argument("--B", type=int, default=64)
    parser.add_argument("--I", type=int, default=64)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    parser.add_argument("--backends", nargs="+", default=["reference", "compiled", "fused"],
                        choices=["reference", "compiled", "fused"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--step", action="store_true",
                        help="also time one step (T=1, no grad) of the dense and the routed layers")
    parser.add_argument("--step-batch", type=int, default=1)
    parser.add_argument("--step-repeats", type=int, default=200)
    parser.add_argument("--update-rates", type=float, nargs="*", default=[],
                        help="also time rhythm- and event-gated GRUs opening this share of neurons")
    parser.add_argument("--cell", default="gru", choices=["gru", "lstm", "elman"],
                        help="the cell of the density / keep / update-rate rows (default gru)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    rows = []
    print(f"T={args.T} B={args.B} I={args.I} device={device} threads={torch.get_num_threads()}")
    header = f"{'H':>5} {'model':<34} {'fwd ms':>9} {'fwd+bwd ms':>11} {'x nn.GRU fwd':>13} {'x nn.GRU f+b':>13}"
    for H in args.hidden:
        x = torch.randn(args.T, args.B, args.I, device=device)
        models = {"nn.GRU": torch.nn.GRU(args.I, H).to(device), "nn.LSTM": torch.nn.LSTM(args.I, H).to(device)}
        for backend in args.backends:
            for frac in args.fractions:
                models[f"{backend} {args.cell} density={frac:g}"] = SparseRecurrent(
                    args.I, H, cell=args.cell, density_ih=frac, density_hh=frac, backend=backend, seed=0, device=device)
            for frac in args.fractions:
                if frac < 1.0:
                    models[f"{backend} {args.cell} keep={frac:g}"] = SparseRecurrent(
                        args.I, H, cell=args.cell, router_keep=frac, backend=backend, seed=0, device=device)
            for rate in args.update_rates:
                for gate in ("rhythm", "event"):
                    models[f"{backend} {args.cell} {gate} rate={rate:g}"] = SparseRecurrent(
                        args.I, H, cell=args.cell, update_gate=gate, initial_update_rate=rate, backend=backend, seed=0,
                        device=device)
            if args.cell == "gru":
                models[f"{backend} gru event-gated"] = SparseRecurrent(
                    args.I, H, cell="gru", update_gate="event", backend=backend, seed=0, device=device)
                models[f"{backend} lstm dense"] = SparseRecurrent(args.I, H, cell="lstm", backend=backend, seed=0,
                                                                  device=device)
        print(header)
        base = None
        for name, module in models.items():
            start = time.perf_counter()
            measure(module, x, repeats=1, warmup=0)  # compiles once per configuration
            sync()
            warmup_s = time.perf_counter() - start

            def timed(fn=module):
                out = measure(fn, x, args.repeats)
                sync()
                return out

            fwd, fwd_bwd = timed()
            if name == "nn.GRU":
                base = (fwd, fwd_bwd)
            row = {"hidden": H, "model": name, "forward_ms": fwd, "forward_backward_ms": fwd_bwd,
                   "speedup_vs_nn_gru_forward": base[0] / fwd, "speedup_vs_nn_gru_forward_backward": base[1] / fwd_bwd,
                   "warmup_s": warmup_s}
            if getattr(module, "update_gate", None) is not None:
                stats = module.statistics()
                row["update_rate"] = stats["update_rate"]
                trace = module._last_trace
                row["computed_fraction"] = float(trace.get("computed", trace["n_elements"])) / trace["n_elements"]
            rows.append(row)
            print(f"{H:>5} {name:<34} {fwd:>9.1f} {fwd_bwd:>11.1f} {row['speedup_vs_nn_gru_forward']:>12.2f}x "
                  f"{row['speedup_vs_nn_gru_forward_backward']:>12.2f}x", flush=True)
    routed = routed_vs_dense(rows, args.cell)
    gated = gated_vs_ungated(rows, args.cell)
    steps = one_step_rows(args, device, sync) if args.step else []
    payload = {"benchmark": "bench_core", "command": " ".join(["python", "scripts/bench_core.py", *(argv or sys.argv[1:])]),
               "machine": machine_info(), "shape": {"T": args.T, "B": args.B, "I": args.I}, "cell": args.cell,
               "rows": rows,
               "routed_vs_dense": routed, "gated_vs_ungated": gated, "one_step": steps}
    write_json(args.json, payload)
    return payload


def routed_vs_dense(rows: list[dict], cell: str = "gru") -> list[dict]:
    """``time(<backend> <cell> density=1) / time(<backend> <cell> keep=k)`` per hidden size, backend and keep."""
    by_name = {(row["hidden"], row["model"]): row for row in rows}
    out = []
    for (hidden, name), row in by_name.items():
        if f" {cell} keep=" not in name:
            continue
        backend, keep = name.split(f" {cell} keep=")
        dense = by_name.get((hidden, f"{backend} {cell} density=1"))
        if dense is None:
            continue
        out.append({"hidden": hidden, "backend": backend, "keep": float(keep),
                    "forward_speedup": dense["forward_ms"] / row["forward_ms"],
                    "forward_backward_speedup": dense["forward_backward_ms"] / row["forward_backward_ms"]})
    if out:
        print("routed vs the same layer dense (same backend): time(dense) / time(routed)")
        for r in out:
            print(f"{r['hidden']:>5} {r['backend']:<10} keep={r['keep']:<5g} forward {r['forward_speedup']:6.2f}x   "
                  f"forward+backward {r['forward_backward_speedup']:6.2f}x")
    return out


def gated_vs_ungated(rows: list[dict], cell: str = "gru") -> list[dict]:
    """``time(<backend> <cell> density=1) / time(<backend> <cell> <gate> rate=r)`` per hidden size, backend, gate,
    rate."""
    by_name = {(row["hidden"], row["model"]): row for row in rows}
    out = []
    for (hidden, name), row in by_name.items():
        if " rate=" not in name:
            continue
        backend, rest = name.split(f" {cell} ")
        gate, rate = rest.split(" rate=")
        dense = by_name.get((hidden, f"{backend} {cell} density=1"))
        if dense is None:
            continue
        out.append({"hidden": hidden, "backend": backend, "gate": gate, "rate": float(rate),
                    "update_rate": row["update_rate"], "computed_fraction": row["computed_fraction"],
                    "forward_speedup": dense["forward_ms"] / row["forward_ms"],
                    "forward_backward_speedup": dense["forward_backward_ms"] / row["forward_backward_ms"]})
    if out:
        print("gated vs the same layer with the gate off (same backend): time(gate off) / time(gated)")
        for r in out:
            print(f"{r['hidden']:>5} {r['backend']:<10} {r['gate']:<6} rate={r['rate']:<5g} (realised "
                  f"{r['update_rate']:.3f}, computed {r['computed_fraction']:.3f})  forward {r['forward_speedup']:6.2f}x"
                  f"   forward+backward {r['forward_backward_speedup']:6.2f}x")
    return out


def one_step_rows(args, device: torch.device, sync) -> list[dict]:
    """One acting / streaming step: ``layer(x (1, B, I), state)`` without grad, the routed layer (``auto``
    backend) against the dense layer on its faster backend for the call (``auto`` or ``reference``) and
    ``nn.GRU``."""
    rows = []
    print(f"one step: T=1 B={args.step_batch} I={args.I}, no grad, backend auto; median of {args.step_repeats}")
    for H in args.hidden:
        x = torch.randn(1, args.step_batch, args.I, device=device)
        dense = SparseRecurrent(args.I, H, cell="gru", seed=0, device=device)
        dense_reference = SparseRecurrent(args.I, H, cell="gru", seed=0, device=device, backend="reference")
        state = dense.initial_state(args.step_batch)

        def step(layer):
            def call():
                with torch.no_grad():
                    layer(x, state)
                sync()
            return call

        auto_ms = time_call(step(dense), args.step_repeats, warmup=5)
        reference_ms = time_call(step(dense_reference), args.step_repeats, warmup=5)
        dense_ms = min(auto_ms, reference_ms)  # the dense layer on its faster backend for this call
        nn_gru = torch.nn.GRU(args.I, H).to(device)
        h0 = torch.zeros(1, args.step_batch, H, device=device)

        def nn_call():
            with torch.no_grad():
                nn_gru(x, h0)
            sync()

        nn_ms = time_call(nn_call, args.step_repeats, warmup=5)
        print(f"{H:>5} dense gru: auto ({dense.last_backend}) {auto_ms * 1e3:9.1f} us, reference "
              f"{reference_ms * 1e3:9.1f} us   nn.GRU {nn_ms * 1e3:9.1f} us")
        for frac in args.fractions:
            if frac >= 1.0:
                continue
            for keep in (frac, (1.0, frac)):
                layer = SparseRecurrent(args.I, H, cell="gru", router_keep=keep, seed=0, device=device)
                ms = time_call(step(layer), args.step_repeats, warmup=5)
                row = {"hidden": H, "batch": args.step_batch, "keep": list(keep) if isinstance(keep, tuple) else keep,
                       "routed_us": ms * 1e3, "dense_us": dense_ms * 1e3, "dense_auto_us": auto_ms * 1e3,
                       "dense_reference_us": reference_ms * 1e3, "nn_gru_us": nn_ms * 1e3,
                       "speedup_vs_dense": dense_ms / ms, "speedup_vs_nn_gru": nn_ms / ms,
                       "backend": layer.last_backend}
                rows.append(row)
                print(f"{H:>5} keep={str(keep):<12} {ms * 1e3:9.1f} us  {dense_ms / ms:6.2f}x dense  "
                      f"{nn_ms / ms:6.2f}x nn.GRU  ({layer.last_backend})")
    return rows


if __name__ == "__main__":
    main()
