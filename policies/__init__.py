"""sparsernn.policies: the SB3 glue that puts a core layer where RecurrentPPO expects its LSTM."""
from .core_adapter import RecurrentCore
from .maskable import MaskableSparseRecurrentPolicy
from .options import LAYER_OPTIONS, resolve_layer_options
from .sparse_recurrent import SparseRecurrentPolicy

__all__ = ["SparseRecurrentPolicy", "MaskableSparseRecurrentPolicy", "RecurrentCore", "LAYER_OPTIONS", "resolve_layer_options"]
