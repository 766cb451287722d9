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

# ruff: noqa: F401
from typing import TYPE_CHECKING

from weightlab._lazy import attach

# the submodules are imported on first use: ``weightlab.recast.config`` (the CLI's choices) needs no torch
__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "config": ["PRESETS", "SHARING_SCHEMES", "METHODS", "RecastConfig", "preset", "preset_for_family"],
        "layers": ["RecastConv2d", "RecastLayer", "RecastLinear", "TemplateBank"],
        "mimicry": ["MimicryConfig", "MimicryResult", "reconstruct"],
        "planner": ["BankPlan", "plan_banks"],
        "serialization": ["load_recast", "save_recast"],
        "tuner": [
            "apply_recast",
            "bank_plans",
            "banks",
            "count_parameters",
            "is_recast",
            "mark_only_coefficients_trainable",
            "materialize",
            "recast_layers",
        ],
    },
)

if TYPE_CHECKING:  # for type checkers and IDEs (__all__ is built by attach, which linters cannot see)
    from weightlab.recast.config import METHODS, PRESETS, SHARING_SCHEMES, RecastConfig, preset, preset_for_family
    from weightlab.recast.layers import RecastConv2d, RecastLayer, RecastLinear, TemplateBank
    from weightlab.recast.mimicry import MimicryConfig, MimicryResult, reconstruct
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
