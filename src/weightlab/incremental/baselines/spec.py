"""The baseline registry, names and options: ``ewc``, ``lwf:alpha=1,temperature=2``, ``er_ace:per_class=120``,
``hat:c=0.5`` …

A baseline is a class registered in :data:`BASELINES` with a typed options dataclass: a
:class:`~weightlab.incremental.baselines.harness.ContinualMethod` (implemented here, run by the
harness) or an :class:`~weightlab.incremental.baselines.avalanche_cl.AvalancheBaseline` (a strategy
from Avalanche). Adding one is one file and one ``@BASELINES.register(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.errors import WeightlabError
from weightlab.registry import Registry, options_dict, parse_spec

BASELINES: Registry[type] = Registry("continual-learning baseline", package="weightlab.incremental.baselines")


@dataclass
class BaselineSpec:
    method: str
    options: dict[str, Any] = field(default_factory=dict)  # every option, defaults included

    @property
    def defaults(self) -> dict[str, Any]:
        return options_dict(BASELINES.entry(self.method).options())

    @property
    def name(self) -> str:
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) != v}
        return self.method + (":" + ",".join(f"{k}={v}" for k, v in sorted(changed.items())) if changed else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "method": self.method, "options": dict(self.options)}


def is_baseline(text: str) -> bool:
    return parse_spec(text)[0].lower() in BASELINES


def parse_baseline(text: str) -> BaselineSpec:
    head, given = parse_spec(text)
    method = BASELINES.resolve(head.lower())
    if method is None:
        raise WeightlabError(f"unknown continual-learning baseline '{text}' (use {', '.join(BASELINES)})")
    return BaselineSpec(method, options_dict(BASELINES.entry(method).build_options(given)))
