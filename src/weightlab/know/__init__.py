"""KNOW: knowledge-overflowed weights by retrodiction of progressive forgetting.

>>> from weightlab.know import Trajectory, get_predictor, load_official_known
>>> traj = Trajectory.load("runs/traj")                      # made by `weightlab know forget`
>>> pred = get_predictor("known").predict_steps(traj, [1, 2, 3])   # x2, x4, x8 for r=0.5
>>> net = load_official_known("../shared/reference/known_official/KNOWN_Conv.h5")
"""

from weightlab.know.forgetting import ForgetConfig, incremental_pretraining, nested_subsets, run_forgetting
from weightlab.know.hypermodel import FusedKNOWN, KNOWNNet, load_keras_known, load_official_known
from weightlab.know.kinds import DEFAULT_KINDS, param_kinds
from weightlab.know.predictors import PREDICTORS, Predictor, get_predictor
from weightlab.know.trajectory import Trajectory
from weightlab.know.transfer import TransferConfig, transfer

__all__ = [
    "ForgetConfig",
    "run_forgetting",
    "nested_subsets",
    "incremental_pretraining",
    "KNOWNNet",
    "FusedKNOWN",
    "load_keras_known",
    "load_official_known",
    "DEFAULT_KINDS",
    "param_kinds",
    "Predictor",
    "PREDICTORS",
    "get_predictor",
    "Trajectory",
    "TransferConfig",
    "transfer",
]
