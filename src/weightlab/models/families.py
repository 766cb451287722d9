"""The architecture table: everything weightlab does differently per kind of network, in one place, in
one pattern syntax (regular expressions, matched in full against module names).

**Families** (:data:`FAMILIES`, one row each): the RECAST presets that rewrite a family (the first is its
default), the authors' Neural Mimicry recipe for it, where each adapter placement goes, the adaptation
batch size, which of the RECAST paper's tables its suites are laid out as, whether it is a token
(transformer) model, and the test set ``recast mimic`` reports on by default.

**Architecture rows** (:data:`ARCHITECTURES`, one per model class): for a model from timm, torchvision or
Hugging Face transformers, its family and what RECAST templates on it as a PEFT method -- the target
modules, the container of the layers (``layers_pattern``: the number after it is the layer index, the part
before it the stage, the rest the role), how many consecutive layers share a bank, and whether the first
layer of each stage stays as it is (it changes the width). A model's family is its class's row (its
classes in method-resolution order), never a guess from its attributes.

Rows follow the paper where it has one: transformers template the attention projections (q, k, v) and the
MLP in groups of 2 blocks (RECAST-Att+MLP, Sec. 4 / Table 2), ResNets every conv of a residual block but
the first block of a stage, one bank per stage and conv (Table 1). The others (EfficientNet, MobileNet,
ConvNeXt) are weightlab's, by the same rule: the repeated blocks of a stage share banks.

Placements (the keys adapters ask for):

* ``lowrank`` -- LoRA / DoRA / RoSA. ViT: the fused qkv (MeLo adapts q and v; timm fuses q, k, v into
  one Linear and PEFT adapts whole modules, so k is adapted too). CNNs: the 3x3 convs of every
  residual block (CIFAR ResNets) / the pointwise convs (ConvMixer; LoRA on a depthwise conv is not a
  low-rank update).
* ``mlp`` -- AdaptFormer's parallel bottleneck: each transformer block's MLP.
* ``reprogram`` -- CLR's channel-wise reprogramming: every conv of a convolutional network.

Adding a family is one row here plus its ``@register_model`` builders in ``weightlab/models/<family>.py``
(found by discovery); adding a model class from a library is one architecture row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.registry import Registry


@dataclass(frozen=True)
class RecastPreset:
    """How RECAST rewrites a family: ``targets`` (a regular expression) and the bank sharing."""

    targets: str
    templates: int | None = 2  # None: as many as layers in the group
    coef_sets: int = 2
    sharing: str | None = None  # a Fig. 6a scheme ('low': groups of 2 layers)
    layers_per_group: int | None = None
    skip_first_per_stage: bool = False

    def config_fields(self) -> dict[str, Any]:
        """The fields of a :class:`weightlab.recast.config.RecastConfig` (grouping only when set)."""
        out: dict[str, Any] = dict(target_modules=self.targets, templates=self.templates, coef_sets=self.coef_sets)
        for key in ("sharing", "layers_per_group"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.skip_first_per_stage:
            out["skip_first_per_stage"] = True
        return out


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    presets: dict[str, RecastPreset] = field(default_factory=dict)  # the first is the family's default
    mimicry: dict[str, Any] = field(default_factory=lambda: {"role_weights": {}})
    placements: dict[str, str] = field(default_factory=dict)
    batch_size: int = 64
    paper_table: int = 1
    tokens: bool = False
    eval_dataset: str | None = None

    @property
    def recast_preset(self) -> str | None:
        """The name of the family's default RECAST preset (None: RECAST needs its targets given)."""
        return next(iter(self.presets), None)


@dataclass(frozen=True)
class Architecture:
    """One model class's row: ``name`` is ``timm:<class>``, ``torchvision:<class>`` or ``hf:<model_type>``."""

    name: str
    target_modules: str
    layers_pattern: str
    layers_per_group: int | None = None
    skip_first_per_stage: bool = False
    family: str = "generic"


# the patterns, each written once
_VIT_ATT = r"blocks\.\d+\.attn\.qkv"
_VIT_MLP = r"blocks\.\d+\.mlp\.fc[12]"
_RESNET = r"layer\d+\.\d+\.conv[123]"
_CIFAR_RESNET = r"layer\d+\.\d+\.conv[12]"
_ANY_PREFIX = r"(?:.*\.)?"  # a PEFT row also finds the modules inside a wrapper (model.backbone.blocks...)
_HF_ENCODER = (
    r"(?:.*\.)?layers?\.\d+\.(?:attention\.(?:self|attention)\.(?:query|key|value)"
    r"|attention\.(?:q_proj|k_proj|v_proj)|intermediate\.dense|output\.dense|mlp\.fc1|mlp\.fc2)"
)
_EFFICIENT = r"(?:.*\.)?blocks\.\d+\.\d+\.(?:conv_pw|conv_dw|conv_pwl)"

_RESNET_RECIPE = dict(iterations=3000, lr=0.2, lr_step=500, noise_std=0.0, role_weights={"conv1": 3.5, "conv2": 2.5})

FAMILIES: Registry[Family] = Registry("model family")
for _f in [
    Family(
        "vit",
        "vision transformers (timm ViT / DeiT: blocks.N.attn.qkv, blocks.N.mlp)",
        # ViT (timm): groups of 2 consecutive blocks, n=2, K=2; qkv / fc1 / fc2 banks separate
        presets={
            "vit-att-mlp": RecastPreset(f"{_VIT_ATT}|{_VIT_MLP}", sharing="low"),
            "vit-att": RecastPreset(_VIT_ATT, sharing="low"),
            "vit-mlp": RecastPreset(_VIT_MLP, sharing="low"),
        },
        mimicry={},
        placements={"lowrank": _VIT_ATT, "mlp": r"blocks\.\d+\.mlp"},
        batch_size=128,
        paper_table=2,
        tokens=True,
    ),
    Family(
        "cifar_resnet",
        "CIFAR ResNet-8..56 (the zoo's, with the shared pretrained weights)",
        # one bank per stage and conv role, the first block of each stage untouched, n = blocks - 1
        presets={"cifar-resnet": RecastPreset(_CIFAR_RESNET, templates=None, skip_first_per_stage=True)},
        mimicry=_RESNET_RECIPE,
        placements={"lowrank": _CIFAR_RESNET, "reprogram": r".+"},
        eval_dataset="cifar10",
    ),
    Family(
        "resnet",
        "ImageNet ResNets (torchvision / timm: layerN.M.convK; BasicBlock or Bottleneck)",
        presets={"resnet": RecastPreset(_RESNET, templates=None, skip_first_per_stage=True)},
        mimicry=_RESNET_RECIPE,
        placements={"lowrank": _RESNET, "reprogram": r".+"},
    ),
    Family(
        "convmixer",
        "ConvMixer (the zoo's; depthwise N.0.fn.0 and pointwise N.1 convs)",
        # depthwise and pointwise convs of every block, groups of 2 blocks, n=2
        presets={"convmixer": RecastPreset(r"\d+\.0\.fn\.0|\d+\.1", layers_per_group=2)},
        placements={"lowrank": r"\d+\.1", "reprogram": r".+"},
        eval_dataset="cifar10",
    ),
    Family("small_cnn", "the KNOW authors' small data-collection CNN"),
    Family("mlp", "multilayer perceptrons (KNOWN meta-training)"),
    Family("tiny_nets", "MobileNet- and DenseNet-style nets for small images (KNOWN meta-training)"),
    Family("generic", "any other model: every option must be given explicitly"),
]:
    FAMILIES.add(_f.name, _f, display=_f.name, summary=_f.description)

ARCHITECTURES: Registry[Architecture] = Registry("RECAST architecture row")
for _a in [
    # Hugging Face transformers: separate q, k, v (v4 BERT/RoBERTa/ViT/DeiT names and v5 ViT names)
    Architecture("hf:bert", _HF_ENCODER, r"layers?", 2),
    Architecture("hf:roberta", _HF_ENCODER, r"layers?", 2),
    Architecture("hf:vit", _HF_ENCODER, r"layers?", 2),
    Architecture("hf:deit", _HF_ENCODER, r"layers?", 2),
    # timm: fused qkv
    Architecture("timm:VisionTransformer", rf"{_ANY_PREFIX}(?:{_VIT_ATT}|{_VIT_MLP})", "blocks", 2, family="vit"),
    Architecture("timm:ResNet", rf"{_ANY_PREFIX}{_RESNET}", r"layer\d+", None, True, family="resnet"),
    Architecture("timm:EfficientNet", _EFFICIENT, r"blocks\.\d+", None, True),
    Architecture("timm:MobileNetV3", _EFFICIENT, r"blocks\.\d+", None, True),
    Architecture(
        "timm:ConvNeXt", r"(?:.*\.)?stages\.\d+\.blocks\.\d+\.(?:conv_dw|mlp\.fc1|mlp\.fc2)", r"stages\.\d+\.blocks"
    ),
    # torchvision
    Architecture("torchvision:ResNet", rf"{_ANY_PREFIX}{_RESNET}", r"layer\d+", None, True, family="resnet"),
    Architecture("torchvision:MobileNetV2", r"(?:.*\.)?features\.\d+\.conv\.(?:\d+\.0|\d+)", "features"),
    Architecture("torchvision:MobileNetV3", r"(?:.*\.)?features\.\d+\.block\.\d+\.0", "features"),
]:
    ARCHITECTURES.add(_a.name, _a, summary=f"family {_a.family}")


def get_family(name_or_cfg: Any) -> Family:
    """The family row of a family name, a :class:`~weightlab.models.config.ModelCfg` or a model."""
    if isinstance(name_or_cfg, Family):
        return name_or_cfg
    name = name_or_cfg
    if not isinstance(name, str):
        cfg = getattr(name_or_cfg, "weightlab_cfg", name_or_cfg)
        name = getattr(cfg, "family", None) or (cfg.get("family") if isinstance(cfg, dict) else None) or "generic"
    return FAMILIES.get(name) if name in FAMILIES else FAMILIES.get("generic")


def presets() -> dict[str, RecastPreset]:
    """Every family's RECAST presets by name."""
    return {name: p for fam in FAMILIES.entries() for name, p in fam.obj.presets.items()}


def architecture_row(model: Any) -> Architecture | None:
    """The row of ``model``: ``hf:<config.model_type>``, else ``<library>:<class>`` of its class or the
    nearest base class that has one (timm's distilled DeiT is a ``VisionTransformer``); None otherwise."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if isinstance(model_type, str) and f"hf:{model_type}" in ARCHITECTURES:
        return ARCHITECTURES.get(f"hf:{model_type}")
    for cls in type(model).__mro__:
        key = f"{cls.__module__.split('.')[0]}:{cls.__name__}"
        if key in ARCHITECTURES:
            return ARCHITECTURES.get(key)
    return None


def mimicry_recipe(model: Any) -> dict:
    """The Neural Mimicry recipe settings (``MimicryConfig`` fields) for ``model``: its family's (by its
    class's architecture row, else its ``weightlab_cfg``); a model of no known family gets ``{}``, the
    authors' default (ViT) recipe."""
    import copy

    row = architecture_row(model)
    name = row.family if row is not None else getattr(getattr(model, "weightlab_cfg", None), "family", None)
    if not name or name == "generic" or name not in FAMILIES:
        return {}
    return copy.deepcopy(FAMILIES.get(name).mimicry)


__all__ = [
    "mimicry_recipe",
    "Family",
    "FAMILIES",
    "RecastPreset",
    "Architecture",
    "ARCHITECTURES",
    "get_family",
    "presets",
    "architecture_row",
]
