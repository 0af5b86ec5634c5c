"""Leave-one-category-out cross-validation of NAB detectors and their knobs.

NAB's own protocol optimises one threshold on the very files it scores; a knob
chosen on the same files adds a second optimistic choice. This module scores
the choice instead: with the corpus' categories as folds, each fold holds out
one category, chooses a configuration *and* a threshold on the other
categories, and scores the held-out category with them.

Protocol (per cost profile; ``standard`` is the headline):

1. Every candidate configuration's anomaly scores are computed once per file
   (:func:`cached_scores`: a NAB-format results folder per configuration,
   keyed by detector, keywords and seed, so a rerun or a larger grid reuses
   them).
2. Fold ``k`` holds out category ``C_k``. On the training files (every other
   category) each candidate's threshold is optimised as NAB's sweep does (one
   threshold shared by all training files, ties to the highest threshold;
   :func:`~.sweep.threshold_curve`), and the candidate with the highest
   training score is chosen (ties: the first candidate in the order given).
3. The held-out files are scored with the chosen candidate at the chosen
   threshold: their raw score ``R_k`` is the sum of the files' raw NAB scores.
4. The folds are combined as NAB combines files::

       score_cv = 100 * (sum_k R_k - N) / (P - N)

   with ``N = -fnWeight * (windows with a scorable row, all files)`` the null
   detector's raw score and ``P = tpWeight * (windows, all files)`` the
   perfect detector's, both summed over every file of the corpus (the folds
   partition the files, so these are the sums of the folds' null and perfect
   scores). A fold's own normalised score is reported where its category has
   windows (``artificialNoAnomaly`` has none: only false positives count there).

The in-sample score beside it chooses the candidate and the threshold on all
files and scores the same files (NAB's protocol with a knob search on top).

Examples
--------
>>> corpus = load_nab_corpus("../shared/data/nab")                                  # doctest: +SKIP
>>> grid = expand_grid({"surprise_weight": [0.5, 0.8], "seasonal": [True, False]})   # doctest: +SKIP
>>> candidates = {config_label("surnn", p): cached_scores(corpus, "runs/nab_cache", params=p)
...               for p in grid}                                                     # doctest: +SKIP
>>> leave_one_category_out(candidates, corpus, "standard").score                    # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .baselines import NABStreamDetector, run_corpus
from .corpus import NABCorpus, results_path, write_results
from .scoring import ResultsLike, anomaly_scores_of, normalized_score
from .sweep import FileSweep, score_at_threshold, sweep_file, threshold_curve


def config_label(detector: str, params: Mapping | None = None) -> str:
    """A readable name of ``detector`` with keywords ``params``: ``surnn(seasonal=false,surprise_weight=0.5)``.

    Keys are sorted and values written as compact JSON, so equal configurations get equal labels.
    """
    if not params:
        return detector
    settings = ",".join(f"{k}={json.dumps(params[k], separators=(',', ':'))}" for k in sorted(params))
    return f"{detector}({settings})"


def config_key(detector: str, params: Mapping | None = None, seed: int = 0) -> str:
    """The cache folder name of a configuration: ``<detector>-<12 hex digits of its canonical JSON>``."""
    canonical = json.dumps({"detector": detector, "params": dict(params or {}), "seed": seed},
                           sort_keys=True, separators=(",", ":"))
    return f"{detector}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def expand_grid(grid: Mapping[str, Sequence]) -> list[dict]:
    """Every combination of a grid ``{key: [values]}``, in row-major order of the keys as given."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must map keyword names to lists of values; got {type(grid).__name__}")
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid[{key!r}] must be a non-empty list of values; got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def cached_scores(
    corpus: NABCorpus,
    cache_dir: str | Path,
    detector: str = "surnn",
    params: Mapping | None = None,
    seed: int = 0,
    factory: Callable[..., NABStreamDetector] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, np.ndarray]:
    """Anomaly scores of every file of ``corpus`` for one configuration, computed once and kept on disk.

    The scores live in the NAB-format results folder
    ``cache_dir/<config_key>/<category>/<config_key>_<file>.csv`` (readable by
    :func:`~.corpus.read_results` and NAB's scorer), with ``config.json``
    naming the detector, keywords and seed. Files already there are read back;
    missing ones are run through ``factory(seed, **params)`` (default: the
    registry's ``detector``) and written (each file atomically, so an
    interrupted run resumes). The cache is keyed by the configuration, not by
    the code: clear it after changing a detector.

    Returns ``{name: scores of shape (n_rows,)}``.
    """
    params = dict(params or {})
    if factory is None:
        from .registry import DETECTORS
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {sorted(DETECTORS)} (or pass factory=); got {detector!r}")
        factory = DETECTORS[detector]
    key = config_key(detector, params, seed)
    root = Path(cache_dir)
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"detector": detector, "params": params, "seed": seed, "label": config_label(detector, params)}
    meta_path = folder / "config.json"
    if not meta_path.is_file():
        meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    missing = [name for name in corpus if not results_path(root, key, name).is_file()]
    if missing:
        factory(seed, **params)  # a misspelt keyword fails here, before any file runs
        for name in (progress(missing) if progress is not None else missing):  # one file at a time: resumable
            file_scores = run_corpus(lambda s: factory(s, **params), corpus.subset([name]), seed)[name]
            final = results_path(root, key, name)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(write_results(root / ".partial", key, corpus[name], file_scores), final)
    return {name: _read_scores(results_path(root, key, name), len(corpus[name])) for name in corpus}


def _read_scores(path: Path, n_rows: int) -> np.ndarray:
    """The anomaly_score column of a cached results file, read back bit for bit (pandas >= 2 parses floats exactly; a test checks)."""
    scores = pd.read_csv(path, usecols=["anomaly_score"])["anomaly_score"]
    if len(scores) != n_rows:
        raise ValueError(f"{path} has {len(scores)} rows, the data file {n_rows}: delete it to recompute")
    return scores.to_numpy(dtype=float)


@dataclass(frozen=True)
class FoldResult:
    """One fold of :func:`leave_one_category_out`.

    Attributes
    ----------
    held_out : str
        The category scored (the others chose the configuration and threshold).
    config : str
        The chosen candidate's name.
    threshold : float
        The threshold chosen on the training categories.
    train_score : float
        The chosen candidate's normalised NAB score on the training files at that threshold.
    raw_score, null_score, perfect_score : float
        Held-out raw score and the null / perfect detectors' raw scores on the held-out files.
    score : float
        Held-out normalised score, NaN when the category has no window (null == perfect).
    n_files : int
    """

    held_out: str
    config: str
    threshold: float
    train_score: float
    raw_score: float
    null_score: float
    perfect_score: float
    score: float
    n_files: int


@dataclass(frozen=True)
class CrossValidation:
    """Leave-one-category-out NAB score of a set of candidates for one profile.

    ``score`` is the cross-validated headline (held-out folds combined, see the
    module doc); ``in_sample_score`` chooses candidate and threshold on all
    files and scores the same files, with ``in_sample_config`` and
    ``in_sample_threshold`` the choice.
    """

    profile: str
    score: float
    raw_score: float
    null_score: float
    perfect_score: float
    folds: tuple[FoldResult, ...]
    in_sample_score: float
    in_sample_config: str
    in_sample_threshold: float
    n_candidates: int

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("profile", "score", "raw_score", "null_score", "perfect_score",
                                             "in_sample_score", "in_sample_config", "in_sample_threshold",
                                             "n_candidates")}
        out["folds"] = [vars(f).copy() for f in self.folds]
        return out


def category_folds(corpus: NABCorpus) -> dict[str, list[str]]:
    """``{category: its file names}``, sorted by category: the folds of :func:`leave_one_category_out`."""
    folds: dict[str, list[str]] = {}
    for name in corpus:
        folds.setdefault(corpus[name].category, []).append(name)
    return dict(sorted(folds.items()))


def _null_perfect(sweeps: Sequence[FileSweep], corpus: NABCorpus, names: Sequence[str], cost) -> tuple[float, float]:
    null = -cost.fn_weight * sum(s.n_scored_windows for s in sweeps)
    return null, cost.tp_weight * sum(len(corpus[n].windows) for n in names)


def _choose(candidates: Mapping[str, Mapping[str, np.ndarray]], names: Sequence[str],
            sweeps: Mapping[str, FileSweep], cost) -> tuple[str, float, float]:
    """(candidate, threshold, raw training score) maximising the NAB score over ``names``; first wins ties."""
    best = None
    for label, scores in candidates.items():
        point = threshold_curve([scores[n] for n in names], [sweeps[n] for n in names], cost).best()
        if best is None or point.score > best[2]:
            best = (label, point.threshold, point.score)
    return best


def _raw_at(scores: Mapping[str, np.ndarray], names: Sequence[str], sweeps: Mapping[str, FileSweep],
            cost, threshold: float) -> float:
    return float(sum(score_at_threshold(scores[n], sweeps[n], cost, threshold).score for n in names))


def leave_one_category_out(
    candidates: Mapping[str, ResultsLike], corpus: NABCorpus, profile: str = "standard"
) -> CrossValidation:
    """Cross-validate the choice of candidate and threshold over the corpus' categories (module doc).

    Parameters
    ----------
    candidates : mapping of str to results
        Per candidate configuration (name -> ``{file name: anomaly scores of
        shape (n_rows,)}``, every file of ``corpus``). A fixed detector is one
        candidate; order breaks ties.
    corpus : NABCorpus
        At least two categories; every category is held out once.
    profile : str
        The cost profile the choice maximises and the score uses.
    """
    if not isinstance(candidates, Mapping) or not candidates:
        raise ValueError("candidates must be a non-empty mapping of name -> {file: scores}")
    cost = corpus.profile(profile)
    folds = category_folds(corpus)
    if len(folds) < 2:
        raise ValueError(f"corpus must hold at least two categories to hold one out; it has {sorted(folds)}")
    arrays = {}
    for label, results in candidates.items():
        missing = sorted(set(corpus) - set(results))
        if missing:
            raise ValueError(f"candidates[{label!r}] has no scores for {len(missing)} corpus files, e.g. {missing[0]!r}")
        arrays[label] = {n: anomaly_scores_of(results[n], n) for n in corpus}
    sweeps = {n: sweep_file(corpus[n], cost) for n in corpus}
    every = list(corpus)

    fold_results = []
    for category, held in folds.items():
        train = [n for n in every if n not in set(held)]
        label, threshold, train_raw = _choose(arrays, train, sweeps, cost)
        raw = _raw_at(arrays[label], held, sweeps, cost, threshold)
        null, perfect = _null_perfect([sweeps[n] for n in held], corpus, held, cost)
        t_null, t_perfect = _null_perfect([sweeps[n] for n in train], corpus, train, cost)
        fold_results.append(FoldResult(
            category, label, float(threshold), normalized_score(train_raw, t_null, t_perfect), raw, null, perfect,
            normalized_score(raw, null, perfect) if perfect != null else float("nan"), len(held)))

    null, perfect = _null_perfect([sweeps[n] for n in every], corpus, every, cost)
    raw = sum(f.raw_score for f in fold_results)
    in_label, in_threshold, in_raw = _choose(arrays, every, sweeps, cost)
    return CrossValidation(profile, normalized_score(raw, null, perfect), raw, null, perfect, tuple(fold_results),
                           normalized_score(in_raw, null, perfect), in_label, float(in_threshold), len(arrays))
