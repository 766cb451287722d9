"""The model-family table: everything weightlab does differently per kind of network, in one place.

Each row says, for one family, which RECAST preset rewrites it, the authors' Neural Mimicry recipe
for it, where each adapter placement goes (regular expressions, full match on module names), the
adaptation batch size, which of the RECAST paper's tables its suites are laid out as, whether it is
a token (transformer) model, and the test set ``recast mimic`` reports on by default. Adding a family
is one row here plus its ``@register_model`` builders in ``weightlab/models/<family>.py``.

Placements (the keys adapters ask for):

* ``lowrank`` -- LoRA / DoRA / RoSA. ViT: the fused qkv (MeLo adapts q and v; timm fuses q, k, v into
  one Linear and PEFT adapts whole modules, so k is adapted too). CNNs: the 3x3 convs of every
  residual block (CIFAR ResNets) / the pointwise convs (ConvMixer; LoRA on a depthwise conv is not a
  low-rank update).
* ``mlp`` -- AdaptFormer's parallel bottleneck: each transformer block's MLP.
* ``reprogram`` -- CLR's channel-wise reprogramming: every conv of a convolutional network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weightlab.registry import Registry


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    recast_preset: str | None = None
    mimicry: dict[str, Any] = field(default_factory=lambda: {"role_weights": {}})
    placements: dict[str, str] = field(default_factory=dict)
    batch_size: int = 64
    paper_table: int = 1
    tokens: bool = False
    eval_dataset: str | None = None


FAMILIES: Registry[Family] = Registry("model family")

_RESNET_RECIPE = dict(iterations=3000, lr=0.2, lr_step=500, noise_std=0.0, role_weights={"conv1": 3.5, "conv2": 2.5})

for _f in [
    Family(
        "vit",
        "vision transformers (timm ViT / DeiT: blocks.N.attn.qkv, blocks.N.mlp)",
        recast_preset="vit-att-mlp",
        mimicry={},
        placements={"lowrank": r"blocks\.\d+\.attn\.qkv", "mlp": r"blocks\.\d+\.mlp"},
        batch_size=128,
        paper_table=2,
        tokens=True,
    ),
    Family(
        "cifar_resnet",
        "CIFAR ResNet-8..56 (the zoo's, with the shared pretrained weights)",
        recast_preset="cifar-resnet",
        mimicry=_RESNET_RECIPE,
        placements={"lowrank": r"layer\d+\.\d+\.conv[12]", "reprogram": r".+"},
        eval_dataset="cifar10",
    ),
    Family(
        "resnet",
        "ImageNet ResNets (torchvision / timm: layerN.M.convK)",
        recast_preset="resnet",
        mimicry=_RESNET_RECIPE,
        placements={"lowrank": r"layer\d+\.\d+\.conv[123]", "reprogram": r".+"},
    ),
    Family(
        "convmixer",
        "ConvMixer (the zoo's; depthwise N.0.fn.0 and pointwise N.1 convs)",
        recast_preset="convmixer",
        placements={"lowrank": r"\d+\.1", "reprogram": r".+"},
        eval_dataset="cifar10",
    ),
    Family("small_cnn", "the KNOW authors' small data-collection CNN"),
    Family("mlp", "multilayer perceptrons (KNOWN meta-training)"),
    Family("tiny_nets", "MobileNet- and DenseNet-style nets for small images (KNOWN meta-training)"),
    Family("generic", "any other model: every option must be given explicitly"),
]:
    FAMILIES.add(_f.name, _f, display=_f.name, summary=_f.description)


def get_family(name_or_cfg: Any) -> Family:
    """The family row of a family name, a :class:`~weightlab.models.config.ModelCfg` or a model."""
    if isinstance(name_or_cfg, Family):
        return name_or_cfg
    name = name_or_cfg
    if not isinstance(name, str):
        cfg = getattr(name_or_cfg, "weightlab_cfg", name_or_cfg)
        name = getattr(cfg, "family", None) or (cfg.get("family") if isinstance(cfg, dict) else None) or "generic"
    return FAMILIES.get(name) if name in FAMILIES else FAMILIES.get("generic")


__all__ = ["Family", "FAMILIES", "get_family"]
