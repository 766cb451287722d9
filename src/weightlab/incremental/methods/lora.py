"""LoRA and DoRA through PEFT (``inject_adapter_in_model``). RECAST layers are ``nn.Linear`` /
``nn.Conv2d`` subclasses, so PEFT wraps them like any layer and the low-rank term stacks on the
generated weight: W = W_RECAST + (alpha/r) B A (Eq. 6); DoRA: m (W_RECAST + BA) / ||W_RECAST + BA|| (Eq. 9,
with PEFT's learned magnitude initialised to the column norms of W_RECAST)."""

from __future__ import annotations

from torch import nn

from weightlab.errors import WeightlabError
from weightlab.incremental.methods.base import Adapter
from weightlab.incremental.methods.targets import LOWRANK, family_pattern, set_submodule


class LoraAdapter(Adapter):
    name = "lora"

    def __init__(self, rank: int = 1, alpha: float = 4.0, targets: str | None = None, dora: bool = False):
        if rank < 1:
            raise WeightlabError(f"LoRA rank must be >= 1, got {rank}")
        super().__init__(rank=rank, alpha=alpha, targets=targets)
        self.rank, self.alpha, self.targets, self.dora = rank, alpha, targets, dora
        if dora:
            self.name = "dora"

    def inject(self, backbone: nn.Module, family: str) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        pattern = self.targets or family_pattern(LOWRANK, family, self.name)
        cfg = LoraConfig(r=self.rank, lora_alpha=self.alpha, target_modules=pattern, use_dora=self.dora,
                         lora_dropout=0.0, init_lora_weights=True)
        try:
            inject_adapter_in_model(cfg, backbone)
        except ValueError as e:
            raise WeightlabError(f"PEFT could not place {self.name} on '{pattern}': {e}") from None

    def is_trainable(self, name: str) -> bool:
        return ".lora_" in name

    def merge(self, backbone: nn.Module) -> None:
        from peft.tuners.lora import LoraLayer

        from weightlab.recast.layers import RecastLayer

        for name, module in [(n, m) for n, m in backbone.named_modules() if isinstance(m, LoraLayer)]:
            if isinstance(module.base_layer, RecastLayer):  # PEFT merges into base_layer.weight.data
                module.base_layer = module.base_layer.to_plain()
            module.merge()
            set_submodule(backbone, name, module.get_base_layer())


class DoraAdapter(LoraAdapter):
    name = "dora"

    def __init__(self, rank: int = 1, alpha: float = 4.0, targets: str | None = None):
        super().__init__(rank, alpha, targets, dora=True)
