"""LoRA and DoRA through PEFT (``inject_adapter_in_model``). RECAST layers are ``nn.Linear`` /
``nn.Conv2d`` subclasses, so PEFT wraps them like any layer and the low-rank term stacks on the
generated weight: W = W_RECAST + (alpha/r) B A (Eq. 6); DoRA: m (W_RECAST + BA) / ||W_RECAST + BA|| (Eq. 9,
with PEFT's learned magnitude initialised to the column norms of W_RECAST)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from weightlab.errors import WeightlabError
from weightlab.incremental.methods.base import ADAPTERS, Adapter, plain_layer
from weightlab.models import set_submodule
from weightlab.registry import option


@dataclass
class LoraOptions:
    rank: int = option(1, "rank r of the low-rank update (spec alias: r)", minimum=1)
    alpha: float = option(4.0, "scale alpha; the update is (alpha / r) B A")
    targets: str | None = option(None, "regular expression of the modules to adapt (default: the family's)")


@ADAPTERS.register("lora", display="LoRA", paper="Hu et al. 2022 (through PEFT)", options=LoraOptions)
class LoraAdapter(Adapter):
    """LoRA: a trainable low-rank update B A on the family's low-rank placement."""

    placement = "lowrank"
    use_dora = False

    def inject(self, backbone: nn.Module, family) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        pattern = self.pattern(family)
        import re

        dims = [
            min(
                getattr(m, "in_features", 0) or getattr(m, "in_channels", 0),
                getattr(m, "out_features", 0) or getattr(m, "out_channels", 0),
            )
            for n, m in backbone.named_modules()
            if n and re.fullmatch(pattern, n) and hasattr(m, "weight")
        ]
        if dims and self.opts.rank > max(dims):
            raise WeightlabError(
                f"{self.name} rank r={self.opts.rank} exceeds every adapted layer's dimensions (the largest "
                f"min(in, out) is {max(dims)}): a rank above it adds parameters, not capacity"
            )
        cfg = LoraConfig(
            r=self.opts.rank,
            lora_alpha=self.opts.alpha,
            target_modules=pattern,
            use_dora=self.use_dora,
            lora_dropout=0.0,
            init_lora_weights=True,
        )
        try:
            inject_adapter_in_model(cfg, backbone)
        except ValueError as e:
            raise WeightlabError(f"PEFT could not place {self.name} on '{pattern}': {e}") from None

    def is_trainable(self, name: str) -> bool:
        return ".lora_" in name

    def merge(self, backbone: nn.Module) -> None:
        from peft.tuners.lora import LoraLayer

        for name, module in [(n, m) for n, m in backbone.named_modules() if isinstance(m, LoraLayer)]:
            module.base_layer = plain_layer(module.base_layer)  # PEFT merges into base_layer.weight.data
            module.merge()
            set_submodule(backbone, name, module.get_base_layer())


@ADAPTERS.register("dora", display="DoRA", paper="Liu et al. 2024 (through PEFT)", options=LoraOptions)
class DoraAdapter(LoraAdapter):
    """DoRA: LoRA's update on the direction and a learnt magnitude per output."""

    use_dora = True
