"""RECAST as a PEFT method: ``get_peft_model(model, RecastConfig())`` on any transformers / timm /
torchvision / plain PyTorch model.

>>> import weightlab.peft                       # registers RECAST with PEFT
>>> from weightlab.peft import RecastConfig
>>> from peft import get_peft_model, PeftModel
>>> model = get_peft_model(base, RecastConfig(modules_to_save=["classifier"]))   # = base, to float rounding
>>> model.add_adapter("task2", RecastConfig(modules_to_save=["classifier"]))
>>> model.set_adapter("task2")                  # train only task2's coefficients (+ its head)
>>> model.save_pretrained("out")                # adapters: a few KB each; templates once, beside them
>>> model = PeftModel.from_pretrained(base, "out")

Each adapter holds only its coefficients (K x n numbers a templated layer) and its ``modules_to_save``;
the template banks are derived once from the base weights and shared by every adapter. One adapter is
active at a time (an adapter replaces the weight, it does not add to it); ``merge_and_unload`` gives a
plain model with the active adapter's generated weights.
"""

from weightlab.peft.config import RecastConfig
from weightlab.peft.layer import RecastPeftLayer
from weightlab.peft.model import TEMPLATES_FILE, RecastModel, describe_plan, from_recast_model
from weightlab.peft.registration import register
from weightlab.recast.architectures import ARCHITECTURES, Architecture, detect

register()

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "RecastConfig",
    "RecastModel",
    "RecastPeftLayer",
    "TEMPLATES_FILE",
    "describe_plan",
    "from_recast_model",
    "detect",
    "register",
]
