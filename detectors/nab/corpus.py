"""Read and write corpora in the Numenta Anomaly Benchmark (NAB) layout.

A NAB-format corpus is a folder::

    data/<category>/<file>.csv          timestamp,value
    labels/combined_windows.json        {"<category>/<file>.csv": [[start, end], ...]}
    config/profiles.json                cost profiles (tp/fp/fn/tn weights)
    config/thresholds.json              optional: reference detectors' thresholds
    results/<detector>/<category>/<detector>_<file>.csv   optional: detector output
    reference_scores.json               optional: reference NAB scores

Files are keyed by NAB's relative name, ``"<category>/<file>.csv"``. Rows are
kept in file order, exactly as NAB reads them: a few NAB series repeat or go
back in time around daylight-saving changes, so a file's index is a
`pandas.DatetimeIndex` that need not be unique or sorted.

Examples
--------
>>> corpus = load_nab_corpus("shared/data/nab")            # doctest: +SKIP
>>> taxi = corpus["realKnownCause/nyc_taxi.csv"]           # doctest: +SKIP
>>> taxi.values.head(), taxi.probationary_length, taxi.window_bounds  # doctest: +SKIP
"""
from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..series_input import read_csv_rows

PROBATIONARY_PERCENT = 0.15
"""NAB's default share of each file that is not scored (the probationary period)."""

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
"""NAB's three cost profiles, in the order NAB reports them."""


def probationary_length(n_rows: int, probationary_percent: float = PROBATIONARY_PERCENT) -> int:
    """Number of leading rows that NAB does not score.

    NAB (``nab/util.py: getProbationPeriod``) uses
    ``min(floor(p * n_rows), p * 5000)`` and ignores row ``i`` when
    ``i < that bound``; this returns the count of such rows, computed with the
    same floating-point expressions.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= probationary_percent < 1.0:
        raise ValueError(f"probationary_percent must be in [0, 1), got {probationary_percent}")
    bound = min(math.floor(probationary_percent * n_rows), probationary_percent * 5000)
    return int(math.ceil(bound))


@dataclass(frozen=True)
class CostProfile:
    """One NAB cost profile: the weights of true/false positives and negatives."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


@dataclass(frozen=True, eq=False)
class NABDataFile:
    """One series of a NAB-format corpus.

    Attributes
    ----------
    name : str
        NAB's relative name, ``"<category>/<file>.csv"``.
    values : pandas.Series of shape (n_rows,)
        The ``value`` column, indexed by a DatetimeIndex named ``timestamp``,
        in file order.
    windows : tuple of (pandas.Timestamp, pandas.Timestamp)
        The labelled anomaly windows ``[start, end]`` (both inclusive).
    probationary_percent : float
        Share of the file that NAB does not score.
    """

    name: str
    values: pd.Series
    windows: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
    probationary_percent: float = PROBATIONARY_PERCENT

    def __post_init__(self) -> None:
        if not isinstance(self.values.index, pd.DatetimeIndex):
            raise TypeError(
                f"{self.name}: values must be indexed by a DatetimeIndex, "
                f"got {type(self.values.index).__name__}"
            )
        stamps = self.timestamps.as_unit("ns").asi8
        for start, end in self.windows:
            if end < start:
                raise ValueError(f"{self.name}: window [{start}, {end}] ends before it starts")
            for stamp in (start, end):
                if not np.any(stamps == stamp.value):
                    raise ValueError(
                        f"{self.name}: window limit {stamp} is not a timestamp of the file "
                        "(NAB requires window limits to be rows of the data)"
                    )

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"NABDataFile({self.name!r}, n_rows={len(self)}, n_windows={len(self.windows)})"

    @property
    def category(self) -> str:
        """The category folder, e.g. ``"realKnownCause"``."""
        return self.name.split("/", 1)[0]

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        """The rows' timestamps, in file order."""
        return self.values.index

    @property
    def probationary_length(self) -> int:
        """Number of leading rows NAB ignores when scoring."""
        return probationary_length(len(self), self.probationary_percent)

    @property
    def labels(self) -> np.ndarray:
        """Array of shape (n_rows,) of 0/1: 1 where ``start <= timestamp <= end`` of a window."""
        stamps = self.timestamps.as_unit("ns").asi8
        labels = np.zeros(len(stamps), dtype=np.int8)
        for start, end in self.windows:
            labels[(stamps >= start.value) & (stamps <= end.value)] = 1
        return labels

    @property
    def window_bounds(self) -> tuple[tuple[int, int], ...]:
        """Row positions ``(first row of start, first row of end)`` of each window."""
        stamps = self.timestamps.as_unit("ns").asi8
        return tuple(
            (int(np.flatnonzero(stamps == start.value)[0]), int(np.flatnonzero(stamps == end.value)[0]))
            for start, end in self.windows
        )


@dataclass(frozen=True, eq=False)
class NABCorpus(Mapping[str, NABDataFile]):
    """The files of a NAB-format corpus, keyed by ``"<category>/<file>.csv"``.

    Attributes
    ----------
    files : dict of str to NABDataFile
        The series, sorted by name.
    profiles : dict of str to CostProfile
        NAB's cost profiles from ``config/profiles.json``.
    root : pathlib.Path or None
        The corpus folder, when loaded from disk.
    thresholds : dict
        ``config/thresholds.json`` (detector -> profile -> {"threshold", "score"}),
        empty when absent.
    """

    files: dict[str, NABDataFile]
    profiles: dict[str, CostProfile]
    root: Path | None = None
    thresholds: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> NABDataFile:
        try:
            return self.files[name]
        except KeyError:
            raise KeyError(f"no file {name!r} in the corpus; it has {len(self.files)} files") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"NABCorpus(root={str(self.root)!r}, n_files={len(self)}, n_windows={self.n_windows})"

    @property
    def n_windows(self) -> int:
        """Total number of labelled windows (NAB's count of possible true positives)."""
        return sum(len(f.windows) for f in self.files.values())

    def profile(self, name: str) -> CostProfile:
        """The cost profile called ``name``."""
        if name not in self.profiles:
            raise ValueError(f"profile must be one of {sorted(self.profiles)}, got {name!r}")
        return self.profiles[name]

    def subset(self, names: Iterable[str]) -> NABCorpus:
        """A corpus holding only the files ``names`` (same profiles and thresholds)."""
        return NABCorpus({n: self[n] for n in names}, self.profiles, self.root, self.thresholds)


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} at {path} is not valid JSON: {err}") from err


def load_profiles(path: str | Path) -> dict[str, CostProfile]:
    """Read NAB's ``config/profiles.json`` into ``{name: CostProfile}``."""
    raw = _read_json(Path(path), "NAB profiles file")
    profiles = {}
    for name, entry in raw.items():
        try:
            costs = entry["CostMatrix"]
            profiles[name] = CostProfile(
                name,
                float(costs["tpWeight"]),
                float(costs["fpWeight"]),
                float(costs["fnWeight"]),
                float(costs.get("tnWeight", 1.0)),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"profile {name!r} in {path} must look like "
                '{"CostMatrix": {"tpWeight": .., "fpWeight": .., "fnWeight": ..}}, '
                f"got {entry!r}"
            ) from err
    return profiles


def read_series(path: str | Path) -> pd.Series:
    """Read one NAB data file (``timestamp,value``) into a Series indexed by time."""
    path = Path(path)
    frame = read_csv_rows(path)
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} must have columns timestamp,value; missing {sorted(missing)}")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]), name="timestamp").as_unit("ns")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: cannot parse the timestamp column: {err}") from err
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{path}: value at row {bad} is missing or not a finite number")
    return pd.Series(values, index=index, name="value")


def _select(names: list[str], patterns: Iterable[str] | None) -> list[str]:
    if patterns is None:
        return names
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatch(n, pattern)]
        if not hits:
            raise ValueError(f"files: {pattern!r} matches no file of the corpus")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def load_nab_corpus(
    path: str | Path,
    files: Iterable[str] | None = None,
    probationary_percent: float = PROBATIONARY_PERCENT,
) -> NABCorpus:
    """Load a NAB-format corpus folder.

    Parameters
    ----------
    path : str or Path
        Folder holding ``data/``, ``labels/combined_windows.json`` and
        ``config/profiles.json``.
    files : iterable of str, optional
        Relative names or shell patterns (``"realKnownCause/*"``) of the files
        to load; all files when omitted.
    probationary_percent : float
        Share of each file that is not scored (NAB: 0.15).

    Returns
    -------
    NABCorpus
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"NAB corpus folder not found: {root}")
    data_dir = root / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{root} is not a NAB-format corpus: it has no data/ folder")
    names = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv"))
    if not names:
        raise ValueError(f"{data_dir} holds no <category>/<file>.csv data files")
    names = _select(names, files)

    windows = _read_json(root / "labels" / "combined_windows.json", "NAB windows file")
    if not isinstance(windows, dict):
        raise ValueError(f"{root / 'labels' / 'combined_windows.json'} must map file names to window lists")
    profiles = load_profiles(root / "config" / "profiles.json")
    thresholds_path = root / "config" / "thresholds.json"
    thresholds = _read_json(thresholds_path, "NAB thresholds file") if thresholds_path.is_file() else {}

    loaded = {}
    for name in names:
        if name not in windows:
            raise ValueError(f"labels/combined_windows.json has no entry for data file {name!r}")
        try:
            limits = tuple((pd.Timestamp(start), pd.Timestamp(end)) for start, end in windows[name])
        except (TypeError, ValueError) as err:
            raise ValueError(f"windows of {name!r} must be [start, end] timestamp pairs: {err}") from err
        loaded[name] = NABDataFile(name, read_series(data_dir / name), limits, probationary_percent)
    return NABCorpus(loaded, profiles, root, thresholds)


def load_reference_scores(path: str | Path) -> dict | None:
    """Read ``reference_scores.json`` of a corpus folder (or the file itself); None if absent."""
    path = Path(path)
    if path.is_dir():
        path = path / "reference_scores.json"
    return _read_json(path, "reference scores file") if path.is_file() else None


def results_path(results_dir: str | Path, detector: str, name: str) -> Path:
    """Where NAB keeps ``detector``'s output for the file ``name``."""
    category, file_name = name.split("/", 1)
    return Path(results_dir) / detector / category / f"{detector}_{file_name}"


def list_result_detectors(results_dir: str | Path) -> list[str]:
    """Names of the detector folders of a NAB results directory."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"NAB results folder not found: {results_dir}")
    return sorted(p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*/*.csv")))


def read_results(results_dir: str | Path, detector: str, corpus: NABCorpus) -> dict[str, pd.DataFrame]:
    """Read a detector's NAB results for every file of ``corpus``.

    Returns ``{name: DataFrame}`` with the file's columns (at least
    ``anomaly_score``); rows must match the data file's rows one to one.
    """
    results = {}
    for name, data_file in corpus.items():
        path = results_path(results_dir, detector, name)
        if not path.is_file():
            raise FileNotFoundError(f"no results of detector {detector!r} for {name!r}: {path} is missing")
        frame = pd.read_csv(path)
        if "anomaly_score" not in frame.columns:
            raise ValueError(f"{path} has no anomaly_score column (columns: {list(frame.columns)})")
        if len(frame) != len(data_file):
            raise ValueError(f"{path} has {len(frame)} rows but the data file has {len(data_file)}")
        if "timestamp" in frame.columns:
            stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"])).as_unit("ns")
            if not np.array_equal(stamps.asi8, data_file.timestamps.as_unit("ns").asi8):
                raise ValueError(f"{path}: timestamps differ from those of data file {name!r}")
        results[name] = frame
    return results


def write_results(
    results_dir: str | Path, detector: str, data_file: NABDataFile, anomaly_scores: np.ndarray
) -> Path:
    """Write NAB's results file (``timestamp,value,anomaly_score,label``) for one series."""
    scores = np.asarray(anomaly_scores, dtype=float)
    if scores.shape != (len(data_file),):
        raise ValueError(
            f"anomaly_scores must have shape ({len(data_file)},) for {data_file.name!r}, got {scores.shape}"
        )
    path = results_path(results_dir, detector, data_file.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "timestamp": data_file.timestamps.strftime("%Y-%m-%d %H:%M:%S"),
            "value": data_file.values.to_numpy(),
            "anomaly_score": scores,
            "label": data_file.labels,
        }
    )
    frame.to_csv(path, index=False)
    return path
