"""Which modules RECAST templates on a model: its row of the architecture table
(:data:`~weightlab.models.families.ARCHITECTURES` for models from timm, torchvision and Hugging Face
transformers; the family's preset for weightlab's own models), turned into the planning options of a
:class:`~weightlab.peft.RecastConfig` (:func:`resolve_plan_options`) or a
:class:`~weightlab.recast.config.RecastConfig` (:func:`config_for_model`). The rows themselves live in
:mod:`weightlab.models.families`, with the families, in one pattern syntax (regular expressions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from weightlab.errors import WeightlabError
from weightlab.models.families import ARCHITECTURES, Architecture, architecture_row, get_family


def detect(model: nn.Module) -> str | None:
    """The table row of ``model``: ``hf:<model_type>``, ``timm:<class>``, ``torchvision:<class>`` (its class or
    a base class), the zoo's ``weightlab:<family>``; ``None`` when there is none."""
    row = architecture_row(model)
    if row is not None:
        return row.name
    cfg = getattr(model, "weightlab_cfg", None)
    if cfg is not None and getattr(cfg, "family", None) and get_family(cfg).recast_preset is not None:
        return f"weightlab:{cfg.family}"
    return None


def architecture(name: str) -> Architecture:
    """The row called ``name``; ``weightlab:<family>`` is the family's default preset as a row."""
    if name.startswith("weightlab:"):
        family = get_family(name.split(":", 1)[1])
        preset = family.presets[family.recast_preset]
        return Architecture(
            name, preset.targets, "", preset.layers_per_group, preset.skip_first_per_stage, family=family.name
        )
    return ARCHITECTURES.get(name)


@dataclass(frozen=True)
class PlanOptions:
    architecture: str | None
    layers_pattern: str | None
    layers_per_group: int | None
    skip_first_per_stage: bool


def resolve_plan_options(model: nn.Module, config) -> PlanOptions:
    """Fill the unset planning fields of a :class:`~weightlab.peft.RecastConfig` from the model's row.

    ``config.target_modules`` unset and no row for the model: a clear error naming what to pass."""
    name = config.architecture or detect(model)
    row = architecture(name) if name else None
    if config.target_modules is None:
        if row is None:
            raise WeightlabError(
                f"no RECAST architecture row for {type(model).__module__}.{type(model).__name__}: pass "
                "RecastConfig(target_modules=...) (module-name suffixes or a regular expression), and "
                "layers_pattern if the layer index is not the first number in the module names"
            )
        config.target_modules = row.target_modules
    if row is not None:
        config.architecture = name
        if config.layers_pattern is None and row.layers_pattern:
            config.layers_pattern = row.layers_pattern
        if config.skip_first_per_stage is None:
            config.skip_first_per_stage = row.skip_first_per_stage
        if config.layers_per_group is None and config.num_groups is None and config.sharing is None:
            config.layers_per_group = row.layers_per_group
    return PlanOptions(name, config.layers_pattern, config.layers_per_group, bool(config.skip_first_per_stage))


def config_for_model(model: nn.Module, preset_name: str | None = None, **overrides) -> tuple[Any, str]:
    """The :class:`~weightlab.recast.config.RecastConfig` weightlab's own pipeline applies to ``model``,
    and where it came from: ``preset_name``; else the preset of the model's family (the zoo, timm ViTs and
    ResNets); else the model's row in :data:`~weightlab.models.families.ARCHITECTURES` (its target modules,
    found by name, with the
    row's ``layers_pattern``, grouping and first-layer rule). ``overrides`` (None ignored) apply last."""
    from weightlab.recast.config import preset

    cfg = getattr(model, "weightlab_cfg", None)
    family = get_family(cfg) if cfg is not None else None
    if preset_name is None and family is not None and family.recast_preset is not None:
        preset_name = family.recast_preset
    if preset_name is not None:
        source = f"preset '{preset_name}'" + (f" (model family '{family.name}')" if family is not None else "")
        return preset(preset_name, **overrides), source
    name = detect(model)
    if name is None and overrides.get("target_modules"):  # a model of no row (the user's own): as given
        from weightlab.recast.config import RecastConfig

        fields = {k: v for k, v in overrides.items() if v is not None}
        if fields.get("templates") == "auto":
            fields["templates"] = None
        return RecastConfig(**fields), "the given target modules"
    if name is None:
        raise WeightlabError(
            f"no RECAST preset or architecture row for {type(model).__module__}.{type(model).__name__}"
            + (f" (model family '{family.name}')" if family is not None else "")
            + ": pass the target modules (--targets / target_modules)"
        )
    row = architecture(name)
    pattern = re.compile(row.target_modules)
    targets = [n for n, _ in model.named_modules() if n and pattern.fullmatch(n)]
    if not targets:
        raise WeightlabError(
            f"no module of this {type(model).__name__} matches its row '{name}' ({row.target_modules})"
        )
    fields = dict(
        target_modules=targets,
        templates=2,
        coef_sets=2,
        layers_pattern=row.layers_pattern or None,
        skip_first_per_stage=row.skip_first_per_stage,
        layers_per_group=row.layers_per_group,
        split_by_shape=True,
    )
    if any(overrides.get(k) is not None for k in ("num_groups", "layers_per_group", "sharing")):
        fields.pop("layers_per_group")
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if fields.get("templates") == "auto":
        fields["templates"] = None
    from weightlab.recast.config import RecastConfig

    return RecastConfig(**fields), f"architecture row '{name}'"
