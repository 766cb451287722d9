"""RECAST's entry in PEFT's method registry, through PEFT's public ``register_peft_method`` (the enum
member it requires comes from :mod:`weightlab.peft.peft_type`)."""

from __future__ import annotations

from weightlab.peft.config import RecastConfig
from weightlab.peft.model import RecastModel
from weightlab.peft.peft_type import NAME, PREFIX, recast_peft_type


def register() -> None:
    """Register RECAST with PEFT (idempotent): afterwards ``get_peft_model``, ``PeftModel.from_pretrained``
    and ``load_adapter`` know ``peft_type: RECAST``."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    peft_type = recast_peft_type()
    if peft_type in PEFT_TYPE_TO_TUNER_MAPPING:
        return
    register_peft_method(name=NAME, config_cls=RecastConfig, model_cls=RecastModel, prefix=PREFIX)
