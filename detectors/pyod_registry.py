"""Listing :class:`SelectiveUpdateDetector` in PyOD 3's detector knowledge base.

PyOD 3 has no registration hook for third-party detectors (no entry points, no
``register`` function; checked on pyod 3.6.7). Its one model list is the
knowledge base that :class:`pyod.utils.ad_engine.ADEngine` reads,
``pyod.utils.knowledge.KnowledgeBase``: ``algorithms.json`` and three more JSON
files in a directory, the bundled one unless ``ADEngine(knowledge_dir=...)``
names another. ``ADEngine.list_detectors`` / ``explain_detector`` /
``make_plan`` read it, and ``build_detector`` imports an entry's
``class_path`` (``pyod.utils._detector_factory.build_detector_from_plan``). So
a detector is "registered" by an entry in the knowledge base an engine reads:

* :func:`register_with_pyod` adds the entry to one engine's knowledge base (in memory);
* :func:`write_pyod_knowledge` writes PyOD's bundled knowledge base plus the
  entry to a directory, for ``ADEngine(knowledge_dir=directory)``.

The automatic router (``ADEngine.plan_detection``) picks detectors by PyOD's
own rules (``routing_rules.json``) and benchmark ranks, which name PyOD's
detectors only: a listed detector is chosen by name (``make_plan``), never by
the router, and the entry claims no benchmark rank.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

PYOD_NAME = "SelectiveUpdateDetector"
"""The detector's name in PyOD's knowledge base."""

PYOD_ENTRY = {
    "full_name": "Selective-update RNN forecaster (sparsernn)",
    "category": "time_series",
    "class_path": "sparsernn.detectors.SelectiveUpdateDetector",
    "data_types": ["time_series"],
    "status": "shipped",
    "requires": ["torch", "sparsernn"],
    "default_params": {"contamination": 0.1},
    "preprocessing_mode": "internal",
    "complexity": {"time": "O(n_steps * batch_size * window) to fit, O(n) to score", "space": "O(model_params)"},
    "best_for": "Univariate and multivariate series scored causally, in batch or as a stream",
    "avoid_when": "Fewer than a few dozen timestamps",
    "strengths": ["Score at t uses data up to t only", "Streams point by point (StreamScorer)",
                  "Native multivariate support"],
    "weaknesses": ["Requires PyTorch", "Slower to fit than classical methods"],
    "paper": {"id": "yin2026selective", "short": "Yin et al., arXiv 2603.02226"},
    "version_added": "sparsernn 0.1.0",
}
"""The knowledge-base entry, in the format of PyOD's ``algorithms.json`` (its ``LSTMAD`` entry as the
model); no ``benchmark_rank``: no benchmark of PyOD's has measured this detector."""


def pyod_entry() -> dict:
    """A copy of :data:`PYOD_ENTRY`."""
    return copy.deepcopy(PYOD_ENTRY)


def register_with_pyod(engine=None, **engine_kwargs):
    """List :class:`SelectiveUpdateDetector` in an ``ADEngine``'s knowledge base and return the engine.

    Parameters
    ----------
    engine : pyod.utils.ad_engine.ADEngine, optional
        The engine (default: ``ADEngine(**engine_kwargs)``). Only its knowledge base, in memory, changes.

    Examples
    --------
    >>> engine = register_with_pyod()                                   # doctest: +SKIP
    >>> plan = engine.make_plan(["SelectiveUpdateDetector"], params=[{"progress": False}])  # doctest: +SKIP
    >>> engine.run_detection(series, plan)["n_anomalies"]              # doctest: +SKIP
    """
    if engine is None:
        from pyod.utils.ad_engine import ADEngine

        engine = ADEngine(**engine_kwargs)
    elif engine_kwargs:
        raise TypeError(f"engine_kwargs {sorted(engine_kwargs)} are only for a new engine; an engine was given")
    engine.kb.algorithms[PYOD_NAME] = pyod_entry()
    return engine


def write_pyod_knowledge(directory) -> Path:
    """Write PyOD's bundled knowledge base with :class:`SelectiveUpdateDetector` listed to ``directory``
    (created if needed), for ``ADEngine(knowledge_dir=directory)``; returns the directory.

    The copy is of the installed PyOD's files: write it again after upgrading PyOD.
    """
    from pyod.utils import knowledge

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bundled = Path(knowledge.__file__).parent
    for path in sorted(bundled.glob("*.json")):
        if path.name != "algorithms.json":
            shutil.copyfile(path, directory / path.name)
    algorithms = json.loads((bundled / "algorithms.json").read_text(encoding="utf-8"))
    algorithms[PYOD_NAME] = pyod_entry()
    (directory / "algorithms.json").write_text(json.dumps(algorithms, indent=2), encoding="utf-8")
    return directory
