"""Which modules share which template bank: target matching, layer parsing and grouping."""

from __future__ import annotations

import re
import warnings
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
    raise WeightlabError(
        f"module '{name}' has no layer index in its name, while other targets have one; RECAST groups modules by "
        "layer index (leave it out of target_modules, or give layers_pattern; targets that all lack an index "
        "are banked by shape in model order)"
    )


def _number_at(name: str, k: int) -> tuple[str, int, str]:
    """(stage, layer, role) with the ``k``-th all-digit component of ``name`` as the layer (its last one
    when it has fewer)."""
    parts = name.split(".")
    digits = [j for j, p in enumerate(parts) if p.isdigit()]
    if not digits:
        raise WeightlabError(
            f"module '{name}' has no layer index in its name, while other targets have one; RECAST groups modules "
            "by layer index (leave it out of target_modules, or give layers_pattern; targets that all lack an "
            "index are banked by shape in model order)"
        )
    j = digits[min(k, len(digits) - 1)]
    return ".".join(parts[:j]), int(parts[j]), ".".join(parts[j + 1 :])


def infer_layer_position(names: list[str], shapes: dict[str, tuple[int, ...]]) -> int:
    """Which number in the module names is the layer index, when no ``layers_pattern`` says: the one
    whose (stage, role) banks share the most modules of one shape. ``blocks.<stage>.<block>.conv_pw``
    (timm EfficientNet) reads the block (the second number), ``0.model.encoder.layer.<i>.…`` (a
    SentenceTransformer) the ``i``; names with one number read it. Ties go to the earlier number."""
    most = max((sum(p.isdigit() for p in n.split(".")) for n in names), default=0)
    best, best_shared = 0, -1
    for k in range(max(most, 1)):
        banks: dict[tuple, int] = {}
        for n in names:
            stage, _, role = _number_at(n, k)
            banks[(stage, role, shapes[n])] = banks.get((stage, role, shapes[n]), 0) + 1
        shared = sum(c for c in banks.values() if c > 1)
        if shared > best_shared:
            best, best_shared = k, shared
    return best


def find_targets(model: nn.Module, config: RecastConfig) -> list[str]:
    """The modules ``config.target_modules`` matches, of the kinds it allows: ``nn.Linear`` / ``nn.Conv2d``
    and their subclasses. A subclass with a forward of its own (timm's ``Conv2dSame`` pads first) keeps that
    forward, run with the generated weight (:meth:`~weightlab.recast.layers.RecastLayer.keep_forward_of`),
    as on the PEFT path: one rule for both."""
    kinds = tuple(_KIND_TYPES[k] for k in config.module_kinds)
    names = [n for n, m in model.named_modules() if n and isinstance(m, kinds) and config.targets(n)]
    if not names:
        raise WeightlabError(
            f"no {'/'.join(config.module_kinds)} module matches the target pattern(s) {config.target_modules}"
        )
    return names


def plan_banks(model: nn.Module, config: RecastConfig, names: list[str] | None = None) -> list[BankPlan]:
    """Group the target modules (``names``, else those matching ``config.target_modules``) into banks per
    (stage, group of consecutive layers, role)."""
    modules = dict(model.named_modules())
    targets = names if names is not None else find_targets(model, config)
    shapes = {n: tuple(modules[n].weight.shape) for n in targets}
    if not config.layers_pattern and not any(p.isdigit() for n in targets for p in n.split(".")):
        return _flat_plan(targets, shapes, config, modules)  # no name has a layer index: lin0, lin1, fc_a ...
    if config.layers_pattern:
        parse = lambda n: parse_layer_name(n, config.layers_pattern)  # noqa: E731
    else:
        k = infer_layer_position(targets, shapes)
        parse = lambda n: _number_at(n, k)  # noqa: E731
    by_stage: dict[str, dict[int, list[tuple[str, str]]]] = {}
    for name in targets:
        stage, idx, role = parse(name)
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
                            f"have different weight shapes: {detail} (skip_first_per_stage=True leaves each stage's "
                            "first layer as it is; split_by_shape=True makes one bank per run of equal shapes)"
                        )
                    runs = _shape_runs(names, shapes)
                # nor does a bank span a change of stride (a flat block list's downsampling block of the same
                # shape does another job)
                strides = {n: tuple(getattr(modules[n], "stride", ()) or ()) for n in names}
                runs = [part for run in runs for part in _shape_runs(run, strides)]
                for j, run in enumerate(runs):
                    n = config.templates if config.templates is not None else len(run)
                    key = "__".join(p for p in (stage, f"g{g}", role) if p).replace(".", "_") or f"g{g}"
                    if len(runs) > 1:
                        key += f"__run{j}"  # the j-th run of equal shape and stride (not a stage number)
                    plans.append(BankPlan(key, stage, g, role, tuple(run), shapes[run[0]], n))
    if plans and all(len(p.modules) == 1 for p in plans) and config.group_size() != 1 and len(targets) > 1:
        example = plans[0].modules[0]
        stage, idx, role = parse(example)
        warnings.warn(
            f"no template bank is shared: each of the {len(plans)} banks holds one module, so RECAST saves no "
            f"numbers. The names were read as <stage>.<layer>.<role> ('{example}' -> stage '{stage}', layer "
            f"{idx}, role '{role}'); if that is not the layer index, pass layers_pattern (the container before "
            "the layer number) or other target_modules",
            stacklevel=2,
        )
    return plans


def _flat_plan(
    targets: list[str], shapes: dict[str, tuple[int, ...]], config: RecastConfig, modules: dict[str, nn.Module]
) -> list[BankPlan]:
    """Banks for modules named without a layer index (``lin0``, ``fc_a``): the targets of one shape, in model
    order, are the layers of one stage, grouped like numbered layers (``layers_per_group`` / ``num_groups``);
    as there, a bank does not span a change of stride."""
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for n in targets:
        by_shape.setdefault(shapes[n], []).append(n)
    plans = []
    for s, (shape, names) in enumerate(by_shape.items()):
        order = list(range(len(names)))
        if config.skip_first_per_stage:
            order = order[1:]
        for g, chunk in enumerate(_split_groups(order, config) if order else []):
            group = [names[i] for i in chunk]
            strides = {m: tuple(getattr(modules[m], "stride", ()) or ()) for m in group}
            runs = _shape_runs(group, strides)
            for j, run in enumerate(runs):
                n = config.templates if config.templates is not None else len(run)
                key = f"shape{s}__g{g}" + (f"__run{j}" if len(runs) > 1 else "")
                plans.append(BankPlan(key, f"shape{s}", g, "", tuple(run), shape, n))
    return plans


def _shape_runs(names: list[str], shapes: dict[str, tuple[int, ...]]) -> list[list[str]]:
    """Consecutive modules of one weight shape (a stage whose first block changes the width, a flat
    ``features.N`` list of blocks of several widths), or of one value of any other key (a stride)."""
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
