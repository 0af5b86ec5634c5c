"""The NAB benchmark's detectors: one registry, name -> factory(seed) -> detector.

Every factory takes the run's seed and returns a
:class:`~sparsernn.detectors.nab.baselines.NABStreamDetector`;
``scripts/run_nab.py`` offers exactly these names. A detector joins the
benchmark by adding its factory here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from .baselines import HalfSpaceTreesDetector, IForestDetector, LSTMDetector, NABStreamDetector
from .chain import SelectiveUpdateNAB

BASELINES: Mapping[str, Callable[[int], NABStreamDetector]] = MappingProxyType({
    "iforest": lambda seed: IForestDetector(seed=seed),
    "lstm": lambda seed: LSTMDetector(seed=seed),
    "halfspacetrees": lambda seed: HalfSpaceTreesDetector(seed=seed),
})
"""The baseline detectors (PyOD / river): name -> factory(seed)."""

DETECTORS: Mapping[str, Callable[[int], NABStreamDetector]] = MappingProxyType({
    **BASELINES, SelectiveUpdateNAB.name: SelectiveUpdateNAB,
})
"""Every benchmark detector: the baselines and the selective-update chain (:class:`SelectiveUpdateNAB`)."""

