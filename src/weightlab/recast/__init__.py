"""RECAST: template-bank reparameterisation of any PyTorch model, and Neural Mimicry.

>>> from weightlab.models import create_model
>>> from weightlab import recast
>>> model = create_model("resnet56", pretrained=True)
>>> cfg = recast.preset("cifar-resnet", templates=2, layers_per_group=2)
>>> rmodel = recast.apply_recast(model, cfg)
>>> recast.reconstruct(model, rmodel, method="closed_form")
>>> recast.mark_only_coefficients_trainable(rmodel)        # train only the coefficients
>>> recast.count_parameters(rmodel).coefficients            # numbers per task
>>> plain = recast.materialize(rmodel)                       # an ordinary nn.Module again
>>> recast.save_recast(rmodel, "out/recast"); recast.load_recast("out/recast")
"""

from weightlab.recast.config import PRESETS, SHARING_SCHEMES, RecastConfig, preset, preset_for_family
from weightlab.recast.layers import RecastConv2d, RecastLayer, RecastLinear, TemplateBank
from weightlab.recast.mimicry import METHODS, MimicryConfig, MimicryResult, reconstruct
from weightlab.recast.planner import BankPlan, plan_banks
from weightlab.recast.serialization import load_recast, save_recast
from weightlab.recast.tuner import (
    apply_recast,
    bank_plans,
    banks,
    count_parameters,
    is_recast,
    mark_only_coefficients_trainable,
    materialize,
    recast_layers,
)

__all__ = [
    "PRESETS",
    "SHARING_SCHEMES",
    "RecastConfig",
    "preset",
    "preset_for_family",
    "RecastConv2d",
    "RecastLayer",
    "RecastLinear",
    "TemplateBank",
    "METHODS",
    "MimicryConfig",
    "MimicryResult",
    "reconstruct",
    "BankPlan",
    "plan_banks",
    "load_recast",
    "save_recast",
    "apply_recast",
    "bank_plans",
    "banks",
    "count_parameters",
    "is_recast",
    "mark_only_coefficients_trainable",
    "materialize",
    "recast_layers",
]
