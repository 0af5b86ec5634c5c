"""sparsernn.detectors.nab: the NAB benchmark harness.

The corpus loader (:mod:`.corpus`), NAB's scorer and threshold sweep
(:mod:`.scoring`, :mod:`.sweep`), the causal baseline detectors
(:mod:`.baselines`) and the benchmark chain built on the selective-update
detector (:mod:`.chain`). Tuned benchmark recipes live here, not in the
library's defaults.
"""
