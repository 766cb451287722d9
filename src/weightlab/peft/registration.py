"""RECAST's entry in PEFT's method registry.

PEFT (0.17+) registers a method with ``peft.utils.register_peft_method``, which requires the method's
name to be a member of ``peft.PeftType``. That enum lists PEFT's own methods only, so the ``RECAST``
member is added to it here (once, idempotently) before registering -- the only place weightlab touches
PEFT's internals.
"""

from __future__ import annotations

NAME = "recast"
PREFIX = "recast_"


def recast_peft_type():
    """``PeftType.RECAST``, adding the member to PEFT's enum the first time."""
    from peft.utils.peft_types import PeftType

    key = NAME.upper()
    if key in PeftType.__members__:
        return PeftType[key]
    member = str.__new__(PeftType, key)
    member._name_ = key
    member._value_ = key
    member.__objclass__ = PeftType
    member.__init__(key)
    PeftType._member_map_[key] = member
    PeftType._value2member_map_[key] = member
    PeftType._member_names_.append(key)
    type.__setattr__(PeftType, key, member)
    return member


def register() -> None:
    """Register RECAST with PEFT (idempotent): afterwards ``get_peft_model``, ``PeftModel.from_pretrained``
    and ``load_adapter`` know ``peft_type: RECAST``."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    from weightlab.peft.config import RecastConfig
    from weightlab.peft.model import RecastModel

    peft_type = recast_peft_type()
    if peft_type in PEFT_TYPE_TO_TUNER_MAPPING:
        return
    register_peft_method(name=NAME, config_cls=RecastConfig, model_cls=RecastModel, prefix=PREFIX)
