"""Per-task methods. A method is an optional RECAST base (its coefficients train per task) plus an
optional :class:`Adapter`; every method trains a new head per task.

Names: ``head`` (head only, the paper's baseline), ``recast`` (coefficients + head), ``full``,
``lora``, ``dora``, ``adaptformer``, ``rosa``, ``piggyback``, ``clr`` and ``recast+<adapter>``.
Options: ``lora:r=4`` / ``recast+lora:r=2,alpha=8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.errors import WeightlabError
from weightlab.incremental.methods.adaptformer import AdaptFormerAdapter
from weightlab.incremental.methods.base import Adapter, FullFineTuning
from weightlab.incremental.methods.clr import CLRAdapter
from weightlab.incremental.methods.lora import DoraAdapter, LoraAdapter
from weightlab.incremental.methods.piggyback import PiggybackAdapter
from weightlab.incremental.methods.rosa import RosaAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "full": FullFineTuning, "lora": LoraAdapter, "dora": DoraAdapter, "adaptformer": AdaptFormerAdapter,
    "rosa": RosaAdapter, "piggyback": PiggybackAdapter, "clr": CLRAdapter,
}
_OPTION_ALIASES = {"r": "rank"}

__all__ = ["ADAPTERS", "Adapter", "MethodSpec", "parse_method", "method_names"]


@dataclass
class MethodSpec:
    recast: bool
    adapter: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        parts = (["recast"] if self.recast else []) + ([self.adapter] if self.adapter else [])
        base = "+".join(parts) or "head"
        if self.options:
            base += ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return base

    def build_adapter(self) -> Adapter | None:
        return ADAPTERS[self.adapter](**self.options) if self.adapter else None

    def trains(self, name: str, adapter: Adapter | None) -> bool:
        if self.recast and name.rsplit(".", 1)[-1] == "coefficients":
            return True
        return adapter is not None and adapter.is_trainable(name)

    def to_dict(self) -> dict:
        return dict(name=self.name, recast=self.recast, adapter=self.adapter, options=self.options)


def option_value(v: str) -> Any:
    """A method option's value: int, else float, else the string."""
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def parse_method(text: str) -> MethodSpec:
    """``recast+lora:r=2`` -> MethodSpec(recast=True, adapter='lora', options={'rank': 2})."""
    head, _, opts = text.strip().partition(":")
    parts = [p for p in head.split("+") if p]
    recast = "recast" in parts
    rest = [p for p in parts if p not in ("recast", "head")]
    if len(rest) > 1 or (rest and rest[0] not in ADAPTERS) or not parts:
        raise WeightlabError(f"unknown method '{text}' (use {', '.join(method_names())}, optionally recast+<adapter>)")
    adapter = rest[0] if rest else None
    if adapter == "full" and recast:
        raise WeightlabError("recast+full is not a method: full fine-tuning trains every weight anyway")
    options: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise WeightlabError(f"bad method option '{item}' in '{text}' (use key=value)")
        options[_OPTION_ALIASES.get(k, k)] = option_value(v)
    if options and adapter is None:
        raise WeightlabError(f"method '{text}' takes no options")
    if adapter:
        try:
            ADAPTERS[adapter](**options)
        except TypeError as e:
            raise WeightlabError(f"bad option for {adapter}: {e}") from None
    return MethodSpec(recast, adapter, options)


def method_names() -> list[str]:
    return ["head", "recast", *ADAPTERS, *(f"recast+{a}" for a in ADAPTERS if a != "full")]
