"""sparsernn.agents: training and evaluation of RecurrentPPO agents with sparse recurrent policies."""
from .buffers import MaskableSequenceRolloutBuffer, SequenceRolloutBuffer
from .callbacks import RouterKeepAnnealCallback, SparsityLoggerCallback
from .config import load_config
from .model_files import ModelFileError, load_normalization, save_normalization
from .ppo import SparseRecurrentPPO, folderless_logger
from .ppo_mask import MaskableSparseRecurrentPPO
from .training import ALGOS, EvalResult, TrainResult, evaluate, load_model, make_env, train

__all__ = ["SparseRecurrentPPO", "MaskableSparseRecurrentPPO", "SequenceRolloutBuffer", "MaskableSequenceRolloutBuffer",
           "SparsityLoggerCallback", "RouterKeepAnnealCallback", "train", "evaluate", "load_model", "make_env", "load_config", "EvalResult", "TrainResult", "ALGOS", "ModelFileError",
           "load_normalization", "save_normalization", "folderless_logger"]
