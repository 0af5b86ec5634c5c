"""sparsernn: sparse, routed and selectively-updating recurrent layers.

Subpackages: ``core`` (the engine), ``policies`` and ``agents`` (RecurrentPPO),
``envs`` (Gymnasium tasks), ``detectors`` (anomaly detection).
"""

__version__ = "0.1.0"
