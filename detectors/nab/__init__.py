"""sparsernn.detectors.nab: the NAB benchmark harness.

- :func:`load_nab_corpus` / :class:`NABCorpus` — a NAB-format corpus (data,
  labels, windows, cost profiles); results files are read and written by
  :mod:`.corpus`.
- :func:`score_corpus`, :func:`score_all_profiles`, :func:`summarize` — NAB's
  scorer with thresholds optimised on the files (:mod:`.scoring`, the
  threshold sweep in :mod:`.sweep`).
- :func:`run_corpus` — stream every file through a detector factory;
  :data:`DETECTORS` — the one registry of benchmark detectors (the baselines
  of :mod:`.baselines` and :class:`SelectiveUpdateNAB`, the selective-update
  chain with its tuned settings).
- :func:`leave_one_category_out` — cross-validated NAB score of a set of
  candidate configurations (knobs and threshold chosen on three categories,
  scored on the fourth), with :func:`cached_scores` keeping each
  configuration's scores on disk (:mod:`.crossval`).

Tuned benchmark recipes live here, not in the library's defaults; the
sweep's and the corpus' internals are imported from their modules.
"""
from .baselines import NABStreamDetector, run_corpus
from .chain import SelectiveUpdateNAB
from .crossval import CrossValidation, FoldResult, cached_scores, category_folds, config_label, expand_grid, \
    leave_one_category_out
from .corpus import NABCorpus, NABDataFile, load_nab_corpus
from .registry import BASELINES, DETECTORS
from .scoring import NABResult, score_all_profiles, score_corpus, summarize

__all__ = ["load_nab_corpus", "NABCorpus", "NABDataFile", "NABStreamDetector", "run_corpus", "SelectiveUpdateNAB",
           "BASELINES", "DETECTORS", "NABResult", "score_corpus", "score_all_profiles", "summarize",
           "leave_one_category_out", "CrossValidation", "FoldResult", "cached_scores", "category_folds",
           "config_label", "expand_grid"]
