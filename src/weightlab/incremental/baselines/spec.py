"""Baseline names and options: ``ewc``, ``lwf:alpha=1,temperature=2``, ``er_ace:per_class=120``, ``hat:c=0.5`` …"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.errors import WeightlabError
from weightlab.incremental.methods import option_value

# name -> default options (the RECAST paper's buffers: GDumb 4,400 samples, ER-ACE and DER++ 120 per class;
# the other values are each method's paper's, see its module)
DEFAULTS: dict[str, dict[str, Any]] = {
    "ewc": {"lambda": 100.0},
    "lwf": {"alpha": 1.0, "temperature": 2.0},
    "gdumb": {"mem_size": 4400},
    "er_ace": {"per_class": 120},
    "derpp": {"per_class": 120, "alpha": 0.1, "beta": 0.5},
    "hat": {"s_max": 400.0, "c": 0.75, "lr": 0.05},
    "inflora": {"rank": 10, "threshold": 0.97},
    "l2p": {"pool_size": 10, "length": 5, "top_k": 5, "sim_coefficient": 0.1, "lr": 0.03},
}
_ALIASES = {"er-ace": "er_ace", "erace": "er_ace", "der++": "derpp", "der": "derpp"}


@dataclass
class BaselineSpec:
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        changed = {k: v for k, v in self.options.items() if DEFAULTS[self.method].get(k) != v}
        return self.method + (":" + ",".join(f"{k}={v}" for k, v in sorted(changed.items())) if changed else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "method": self.method, "options": dict(self.options)}


def is_baseline(text: str) -> bool:
    head = text.strip().partition(":")[0].lower()
    return _ALIASES.get(head, head) in DEFAULTS


def parse_baseline(text: str) -> BaselineSpec:
    head, _, opts = text.strip().partition(":")
    method = _ALIASES.get(head.lower(), head.lower())
    if method not in DEFAULTS:
        raise WeightlabError(f"unknown continual-learning baseline '{text}' (use {', '.join(DEFAULTS)})")
    options = dict(DEFAULTS[method])
    for item in filter(None, opts.split(",")):
        k, eq, v = item.partition("=")
        if not eq or k not in options:
            raise WeightlabError(f"bad option '{item}' for {method} (options: "
                                 f"{', '.join(f'{k}={v}' for k, v in DEFAULTS[method].items())})")
        options[k] = option_value(v)
    return BaselineSpec(method, options)
