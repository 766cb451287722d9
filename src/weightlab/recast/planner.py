"""Which modules share which template bank: target matching, layer parsing and grouping."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from torch import nn

from weightlab.errors import WeightlabError
from weightlab.recast.config import RecastConfig

_KIND_TYPES = {"linear": nn.Linear, "conv2d": nn.Conv2d}


@dataclass(frozen=True)
class BankPlan:
    """One template bank: the modules (in layer order) that mix its templates."""

    name: str  # key in weightlab.recast.banks(model), e.g. "blocks__g0__attn_qkv"
    stage: str
    group: int
    role: str
    modules: tuple[str, ...]
    shape: tuple[int, ...]
    n: int

    def to_dict(self) -> dict:
        return dict(
            name=self.name,
            stage=self.stage,
            group=self.group,
            role=self.role,
            modules=list(self.modules),
            shape=list(self.shape),
            n=self.n,
        )


def parse_layer_name(name: str, layers_pattern: str | None = None) -> tuple[str, int, str]:
    """``blocks.3.attn.qkv`` -> (``blocks``, 3, ``attn.qkv``): the first all-digit component is the layer.

    With ``layers_pattern`` (a regular expression for the container that holds the layers, PEFT's
    ``layers_pattern``; ``blocks\\.\\d+`` for timm EfficientNet's ``blocks.<stage>.<block>``) the stage is
    everything up to the first match of the pattern followed by a number, the layer is that number and the
    role is the rest: ``blocks.5.2.conv_pw`` -> (``blocks.5``, 2, ``conv_pw``).
    """
    if layers_pattern:
        m = re.match(rf"(?P<stage>(?:.*?\.)?(?:{layers_pattern}))\.(?P<idx>\d+)(?:\.(?P<role>.*))?$", name)
        if m is None:
            raise WeightlabError(
                f"module '{name}' has no '<{layers_pattern}>.<number>' in its name (layers_pattern {layers_pattern!r})"
            )
        return m.group("stage"), int(m.group("idx")), m.group("role") or ""
    parts = name.split(".")
    for j, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[:j]), int(p), ".".join(parts[j + 1 :])
    raise WeightlabError(f"module '{name}' has no layer index in its name; RECAST groups modules by layer index")


def find_targets(model: nn.Module, config: RecastConfig) -> list[str]:
    kinds = tuple(_KIND_TYPES[k] for k in config.module_kinds)
    names = [
        n
        for n, m in model.named_modules()
        if n and type(m) in kinds and any(fnmatch.fnmatchcase(n, p) for p in config.target_modules)
    ]
    if not names:
        raise WeightlabError(
            f"no {'/'.join(config.module_kinds)} module matches the target pattern(s) {config.target_modules}"
        )
    return names


def plan_banks(model: nn.Module, config: RecastConfig, names: list[str] | None = None) -> list[BankPlan]:
    """Group the target modules (``names``, else those matching ``config.target_modules``) into banks per
    (stage, group of consecutive layers, role)."""
    modules = dict(model.named_modules())
    by_stage: dict[str, dict[int, list[tuple[str, str]]]] = {}
    for name in names if names is not None else find_targets(model, config):
        stage, idx, role = parse_layer_name(name, config.layers_pattern)
        by_stage.setdefault(stage, {}).setdefault(idx, []).append((role, name))
    plans: list[BankPlan] = []
    for stage, layers in by_stage.items():
        order = sorted(layers)
        if config.skip_first_per_stage:
            order = order[1:]
        if not order:
            continue
        for g, chunk in enumerate(_split_groups(order, config)):
            roles: dict[str, list[str]] = {}
            for idx in chunk:
                for role, name in layers[idx]:
                    roles.setdefault(role, []).append(name)
            for role, names in roles.items():
                shapes = {n: tuple(modules[n].weight.shape) for n in names}
                runs = [names]
                if len(set(shapes.values())) > 1:
                    if not config.split_by_shape:
                        detail = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
                        raise WeightlabError(
                            f"modules of one bank (stage '{stage}', group {g}, role '{role}') "
                            f"have different weight shapes: {detail}"
                        )
                    runs = _shape_runs(names, shapes)
                for j, run in enumerate(runs):
                    n = config.templates if config.templates is not None else len(run)
                    key = "__".join(p for p in (stage, f"g{g}", role) if p).replace(".", "_") or f"g{g}"
                    if len(runs) > 1:
                        key += f"__s{j}"
                    plans.append(BankPlan(key, stage, g, role, tuple(run), shapes[run[0]], n))
    return plans


def _shape_runs(names: list[str], shapes: dict[str, tuple[int, ...]]) -> list[list[str]]:
    """Consecutive modules of one weight shape (a stage whose first block changes the width, a flat
    ``features.N`` list of blocks of several widths)."""
    runs: list[list[str]] = []
    for n in names:
        if runs and shapes[runs[-1][-1]] == shapes[n]:
            runs[-1].append(n)
        else:
            runs.append([n])
    return runs


def _split_groups(order: list[int], config: RecastConfig) -> list[list[int]]:
    size = config.group_size()
    if config.num_groups is not None:
        count = len(order)
        if config.num_groups > count:
            raise WeightlabError(f"num_groups={config.num_groups} exceeds the {count} layers of a stage")
        # Alg. 1: g = floor(l / (L / G))
        groups: list[list[int]] = [[] for _ in range(config.num_groups)]
        for pos, idx in enumerate(order):
            groups[pos * config.num_groups // count].append(idx)
        return groups
    if size is None:
        return [order]
    return [order[i : i + size] for i in range(0, len(order), size)]
