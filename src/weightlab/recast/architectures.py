"""Which modules RECAST templates, per architecture: one table, as PEFT keeps target modules per model type.

A row gives the target modules (a regular expression, matched in full against module names), the
container that holds the layers (``layers_pattern``: the number after it is the layer index, the part
before it the stage, the rest the role), how many consecutive layers share a bank, and whether the
first layer of each stage stays as it is (it changes the width). Modules of one (stage, group, role)
with different shapes form one bank per run of equal shapes; a module alone in its bank is left as it is.

Rows follow the paper where it has one: transformers template the attention projections (q, k, v) and the
MLP in groups of 2 blocks (RECAST-Att+MLP, Sec. 4 / Table 2), ResNets every conv of a residual block but
the first block of a stage, one bank per stage and conv (Table 1). The others (EfficientNet, MobileNet,
ConvNeXt) are weightlab's, by the same rule: the repeated blocks of a stage share banks.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from weightlab.errors import WeightlabError

_HF_ENCODER = (
    r"(?:.*\.)?layers?\.\d+\.(?:attention\.(?:self|attention)\.(?:query|key|value)"
    r"|attention\.(?:q_proj|k_proj|v_proj)|intermediate\.dense|output\.dense|mlp\.fc1|mlp\.fc2)"
)
_EFFICIENT = r"(?:.*\.)?blocks\.\d+\.\d+\.(?:conv_pw|conv_dw|conv_pwl)"


@dataclass(frozen=True)
class Architecture:
    name: str
    target_modules: str
    layers_pattern: str
    layers_per_group: int | None = None
    skip_first_per_stage: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        # Hugging Face transformers: separate q, k, v (v4 BERT/RoBERTa/ViT/DeiT names and v5 ViT names)
        Architecture("hf:bert", _HF_ENCODER, r"layers?", 2),
        Architecture("hf:roberta", _HF_ENCODER, r"layers?", 2),
        Architecture("hf:vit", _HF_ENCODER, r"layers?", 2),
        Architecture("hf:deit", _HF_ENCODER, r"layers?", 2),
        # timm: fused qkv
        Architecture("timm:VisionTransformer", r"(?:.*\.)?blocks\.\d+\.(?:attn\.qkv|mlp\.fc1|mlp\.fc2)", "blocks", 2),
        Architecture("timm:ResNet", r"(?:.*\.)?layer\d+\.\d+\.conv[123]", r"layer\d+", None, True),
        Architecture("timm:EfficientNet", _EFFICIENT, r"blocks\.\d+", None, True),
        Architecture("timm:MobileNetV3", _EFFICIENT, r"blocks\.\d+", None, True),
        Architecture(
            "timm:ConvNeXt", r"(?:.*\.)?stages\.\d+\.blocks\.\d+\.(?:conv_dw|mlp\.fc1|mlp\.fc2)", r"stages\.\d+\.blocks"
        ),
        # torchvision
        Architecture("torchvision:ResNet", r"(?:.*\.)?layer\d+\.\d+\.conv[123]", r"layer\d+", None, True),
        Architecture("torchvision:MobileNetV2", r"(?:.*\.)?features\.\d+\.conv\.(?:\d+\.0|\d+)", "features"),
        Architecture("torchvision:MobileNetV3", r"(?:.*\.)?features\.\d+\.block\.\d+\.0", "features"),
    ]
}


def detect(model: nn.Module) -> str | None:
    """The table row of ``model``: ``hf:<model_type>``, ``timm:<class>``, ``torchvision:<class>``, the zoo's
    ``weightlab:<family>``; ``None`` when there is none."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if isinstance(model_type, str) and f"hf:{model_type}" in ARCHITECTURES:
        return f"hf:{model_type}"
    module = type(model).__module__.split(".")[0]
    key = f"{module}:{type(model).__name__}"
    if key in ARCHITECTURES:
        return key
    cfg = getattr(model, "weightlab_cfg", None)
    if cfg is not None and getattr(cfg, "family", None):
        from weightlab.models.families import get_family

        if get_family(cfg).recast_preset is not None:
            return f"weightlab:{cfg.family}"
    return None


def architecture(name: str) -> Architecture:
    if name.startswith("weightlab:"):
        from weightlab.models.families import get_family
        from weightlab.recast.config import PRESETS

        family = get_family(name.split(":", 1)[1])
        preset = PRESETS[family.recast_preset]
        pattern = "|".join(fnmatch.translate(p) for p in preset["target_modules"])
        return Architecture(
            name, pattern, "", preset.get("layers_per_group"), preset.get("skip_first_per_stage", False)
        )
    if name not in ARCHITECTURES:
        raise WeightlabError(f"no RECAST architecture row '{name}' (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


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
    ResNets); else the model's row in :data:`ARCHITECTURES` (its target modules, found by name, with the
    row's ``layers_pattern``, grouping and first-layer rule). ``overrides`` (None ignored) apply last."""
    from weightlab.models.families import get_family
    from weightlab.recast.config import preset

    cfg = getattr(model, "weightlab_cfg", None)
    family = get_family(cfg) if cfg is not None else None
    if preset_name is None and family is not None and family.recast_preset is not None:
        preset_name = family.recast_preset
    if preset_name is not None:
        source = f"preset '{preset_name}'" + (f" (model family '{family.name}')" if family is not None else "")
        return preset(preset_name, **overrides), source
    name = detect(model)
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
