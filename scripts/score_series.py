#!/usr/bin/env python
"""Score a CSV time series with the selective-update detector; write scores and a plot.

The detector is fitted on the first ``--fit-fraction`` of the rows (NAB's
probationary share by default); then every row is streamed, in order,
through the stream scorer and the anomaly likelihood, so the score and alarm
of a row use rows up to it only::

    python scripts/score_series.py ../shared/data/nab/data/realKnownCause/nyc_taxi.csv

writes ``nyc_taxi.scores.csv`` (the input columns plus ``surprise``, ``score``
in [0, 1] and ``alarm``) and ``nyc_taxi.scores.png`` (series, score, alarms)
beside the input, or where ``--out`` / ``--plot`` say.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sparsernn.detectors import AnomalyLikelihood, SelectiveUpdateDetector, StreamScorer
from sparsernn.detectors.series_input import read_csv_rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="CSV with a time column (first by default) and numeric columns")
    parser.add_argument("--time-column", help="name of the timestamp column (default: the first column)")
    parser.add_argument("--value-column", "--columns", dest="columns", nargs="+", metavar="COLUMN",
                        help="value column(s) to score together (default: every numeric column)")
    parser.add_argument("--fit-fraction", type=float, default=0.15, help="share of rows to fit on (default 0.15)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--n-steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--update-gate", default="event", choices=["event", "rhythm", "none"])
    parser.add_argument("--cell", default="gru", choices=["gru", "lstm", "elman"])
    parser.add_argument("--halflife", type=float, default=None, help="online normaliser half-life in rows")
    parser.add_argument("--alarm-threshold", type=float, default=0.5, help="score at which to raise an alarm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="scores CSV (default: <csv stem>.scores.csv beside the input)")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: <csv stem>.scores.png beside the input)")
    parser.add_argument("--save-stream", type=Path, help="also save the stream's state (to continue later)")
    parser.add_argument("--log-dir", help="TensorBoard folder for the training curves")
    args = parser.parse_args(argv)
    if not 0 < args.fit_fraction <= 1:
        parser.error(f"--fit-fraction must be in (0, 1]; got {args.fit_fraction}")
    return args


def read_frame(path: Path, time_column: str | None, columns: list[str] | None) -> pd.DataFrame:
    """The CSV's value columns, indexed by its parsed time column."""
    try:
        frame = read_csv_rows(path)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    time_column = time_column or frame.columns[0]
    if time_column not in frame.columns:
        raise SystemExit(f"error: --time-column {time_column!r} is not a column of {path}: {list(frame.columns)}")
    stamps = frame.pop(time_column)
    if not (pd.api.types.is_object_dtype(stamps) or pd.api.types.is_string_dtype(stamps)):
        raise SystemExit(f"error: the time column {time_column!r} of {path} holds {stamps.dtype} values "
                         f"(e.g. {stamps.iloc[0]!r}), not datetimes; name the time column with --time-column")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(stamps, format="mixed"), name=time_column)
    except (ValueError, TypeError) as error:
        raise SystemExit(f"error: the time column {time_column!r} of {path} does not parse as datetimes "
                         f"({error}); name the time column with --time-column") from None
    frame = frame.set_index(index)
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SystemExit(f"error: --value-column {missing} not among the columns of {path}: "
                             f"{list(frame.columns)}")
        frame = frame[columns]
    frame = frame.select_dtypes("number")
    if frame.shape[1] == 0:
        raise SystemExit(f"error: {path} has no numeric value column")
    return frame


def plot(frame: pd.DataFrame, scored: pd.DataFrame, threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True, height_ratios=(2, 1))
    for column in frame.columns:
        top.plot(frame.index, frame[column], lw=0.7, label=str(column))
    alarms = scored.index[scored["alarm"].to_numpy()]
    for stamp in alarms:
        top.axvline(stamp, color="red", alpha=0.3, lw=0.8)
    top.set_title(f"{title}: {len(alarms)} alarm(s)")
    top.legend(loc="upper left")
    bottom.plot(scored.index, scored["score"], lw=0.7, color="black", label="score")
    bottom.axhline(threshold, color="red", ls="--", lw=0.8, label=f"alarm threshold {threshold:g}")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    frame = read_frame(args.csv, args.time_column, args.columns)
    n_fit = max(2, int(len(frame) * args.fit_fraction))
    detector = SelectiveUpdateDetector(hidden_size=args.hidden_size, n_steps=args.n_steps, cell=args.cell,
                                       update_gate=None if args.update_gate == "none" else args.update_gate,
                                       seed=args.seed, log_dir=args.log_dir)
    try:
        detector.fit(frame.iloc[:n_fit])
        # the whole frame is streamed; as NAB does, the fitted rows are the likelihood's probation
        stream = AnomalyLikelihood(StreamScorer(detector, normalizer_halflife=args.halflife),
                                   learning_period=n_fit // 2, estimation_samples=n_fit - n_fit // 2,
                                   alarm_threshold=args.alarm_threshold)
        scored = stream.score_then_learn(frame)
    except (TypeError, ValueError) as error:
        print(f"error: {args.csv}: {error}", file=sys.stderr)
        return 2
    out = args.out or args.csv.with_suffix(".scores.csv")
    png = args.plot or args.csv.with_suffix(".scores.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.join(scored).to_csv(out)
    plot(frame, scored, args.alarm_threshold, png, args.csv.name)
    if args.save_stream is not None:
        stream.save(args.save_stream)
    print(f"{len(frame)} rows (fitted on {n_fit}), {int(scored['alarm'].sum())} alarm(s), "
          f"max score {np.max(scored['score']):.3f}\nscores: {out}\nplot:   {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
