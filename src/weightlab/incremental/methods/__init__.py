"""Per-task methods. A method is an optional RECAST base (its coefficients train per task) plus an
optional :class:`Adapter` from :data:`ADAPTERS`; every method trains a new head per task.

Names: ``head`` (head only, the paper's baseline), ``recast`` (coefficients + head) and every
registered adapter (``full``, ``lora``, ``dora``, ``rosa``, ``adaptformer``, ``piggyback``, ``clr``),
alone or as ``recast+<adapter>``. Options: ``lora:r=4`` / ``recast+lora:r=2,alpha=8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.errors import WeightlabError
from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.registry import parse_spec

# ADAPTERS finds every module here on its first lookup (a new adapter file is picked up as it is)

_OPTION_ALIASES = {"r": "rank"}

__all__ = ["ADAPTERS", "Adapter", "MethodSpec", "parse_method", "method_names", "suite_methods"]


@dataclass
class MethodSpec:
    recast: bool
    adapter: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # as given (they name the method)

    @property
    def name(self) -> str:
        parts = (["recast"] if self.recast else []) + ([self.adapter] if self.adapter else [])
        base = "+".join(parts) or "head"
        if self.options:
            base += ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return base

    @property
    def owns_rates(self) -> bool:
        """Whether its adapter sets every learning rate from its own options (the learner's are unused)."""
        return self.adapter is not None and ADAPTERS.get(self.adapter).owns_rates

    def build_adapter(self) -> Adapter | None:
        return ADAPTERS.get(self.adapter)(**self.options) if self.adapter else None

    def trains(self, name: str, adapter: Adapter | None) -> bool:
        if self.recast and name.rsplit(".", 1)[-1] == "coefficients":
            return True
        return adapter is not None and adapter.is_trainable(name)

    def to_dict(self) -> dict:
        return dict(name=self.name, recast=self.recast, adapter=self.adapter, options=self.options)


def parse_method(text: str) -> MethodSpec:
    """``recast+lora:r=2`` -> MethodSpec(recast=True, adapter='lora', options={'rank': 2})."""
    head, raw = parse_spec(text)
    parts = [p for p in head.split("+") if p]
    recast = "recast" in parts
    rest = [p for p in parts if p not in ("recast", "head")]
    if len(rest) > 1 or (rest and rest[0] not in ADAPTERS) or not parts:
        raise WeightlabError(f"unknown method '{text}' (use {', '.join(method_names())}, optionally recast+<adapter>)")
    adapter = rest[0] if rest else None
    if adapter == "full" and recast:
        raise WeightlabError("recast+full is not a method: full fine-tuning trains every weight anyway")
    options = {_OPTION_ALIASES.get(k, k): v for k, v in raw.items()}
    if options and adapter is None:
        raise WeightlabError(f"method '{text}' takes no options")
    if adapter:
        ADAPTERS.get(adapter)(**options)  # checks every option's name, type and range
    return MethodSpec(recast, adapter, options)


def method_names() -> list[str]:
    return ["head", "recast", *ADAPTERS, *(f"recast+{a}" for a in ADAPTERS if a != "full")]


def suite_methods(family) -> list[str]:
    """Every method that applies to a model family (a :class:`~weightlab.models.families.Family`):
    head, RECAST, then each registered adapter that has a placement there, alone and on RECAST."""
    names = ["head", "recast"]
    for a in ADAPTERS:
        if ADAPTERS.get(a)().applies_to(family) is None:
            names += [a] if a == "full" else [a, f"recast+{a}"]
    return names
