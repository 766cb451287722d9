"""RECAST's member of ``peft.PeftType``: the only place weightlab touches PEFT's internals.

PEFT (0.17+) registers a method with ``peft.utils.register_peft_method``, which requires the method's
name to be a member of ``peft.PeftType``. That enum lists PEFT's own methods and has no public way to
add one, so :func:`recast_peft_type` adds the ``RECAST`` member (once, idempotently) by the steps
``enum.Enum`` itself takes for a member. ``tests/test_peft_recast.py`` checks the result behaves as a
member in every way PEFT uses it (lookup by name and value, iteration, equality with the string, JSON),
so a PEFT or Python change that breaks it fails there, loudly.
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
