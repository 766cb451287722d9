"""RoSA (Nikdan et al. 2024) on a RECAST (or plain) weight, in the RECAST paper's form (Eq. 10):
W = W0 + S * W0 + (alpha/r) B A, with S a sparse update on a fixed support and B A a LoRA term.

The support is chosen the RoSA way, before the task's first step: the entries with the largest
accumulated squared gradient (a diagonal-Fisher score) of dL/dS = dL/dW * W0 over a few batches.
It is part of the task state (its indices are stored with the task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.incremental.methods.targets import forward_with_weight, matching_modules
from weightlab.models import set_submodule
from weightlab.registry import option


class RobustAdaptedLayer(nn.Module):
    def __init__(self, layer: nn.Module, rank: int, alpha: float, density: float):
        super().__init__()
        self.base_layer = layer
        w = layer.weight
        out_dim, in_dim = w.shape[0], w[0].numel()
        self.rosa_A = nn.Parameter(torch.empty(rank, in_dim, dtype=w.dtype))
        self.rosa_B = nn.Parameter(torch.zeros(out_dim, rank, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.rosa_A, a=math.sqrt(5))
        self.scaling = alpha / rank
        k = max(1, round(density * w.numel()))
        self.rosa_values = nn.Parameter(torch.zeros(k, dtype=w.dtype))
        self.register_buffer("task_support", torch.arange(k, dtype=torch.long))
        self._probe: torch.Tensor | None = None

    def merged_weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        flat = w.flatten()
        if self._probe is not None:
            sparse = self._probe
        else:
            sparse = torch.zeros_like(flat).index_put((self.task_support,), self.rosa_values)
        lowrank = (self.rosa_B @ self.rosa_A).view_as(w) * self.scaling
        return w + (sparse * flat).view_as(w) + lowrank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_weight(self.base_layer, x, self.merged_weight())


@dataclass
class RosaOptions:
    rank: int = option(1, "rank r of the low-rank term (spec alias: r)", minimum=1)
    alpha: float = option(4.0, "scale alpha of the low-rank term")
    density: float = option(1e-3, "fraction of each weight in the sparse support", minimum=0.0)
    targets: str | None = option(None, "regular expression of the modules to adapt (default: the family's)")
    probe_batches: int = option(4, "batches scored to choose the sparse support", minimum=1)


@ADAPTERS.register("rosa", display="RoSA", paper="Nikdan et al. 2024", options=RosaOptions)
class RosaAdapter(Adapter):
    """RoSA: a sparse update on a gradient-chosen support plus a low-rank term."""

    placement = "lowrank"
    wrapper = RobustAdaptedLayer

    def inject(self, backbone: nn.Module, family) -> None:
        o = self.opts
        for name in matching_modules(backbone, self.pattern(family), (nn.Linear, nn.Conv2d)):
            set_submodule(backbone, name, RobustAdaptedLayer(backbone.get_submodule(name), o.rank, o.alpha, o.density))

    def is_trainable(self, name: str) -> bool:
        return ".rosa_" in name

    def before_task(self, model: nn.Module, batches) -> None:
        layers = [m for m in model.modules() if isinstance(m, RobustAdaptedLayer)]
        for m in layers:
            m._probe = torch.zeros(
                m.base_layer.weight.numel(), dtype=m.rosa_A.dtype, device=m.rosa_A.device, requires_grad=True
            )
        score = [torch.zeros_like(m._probe) for m in layers]
        was_training = model.training
        model.train()
        try:
            for i, (x, y) in enumerate(batches):
                if i >= self.opts.probe_batches:
                    break
                loss = F.cross_entropy(model(x), y)
                grads = torch.autograd.grad(loss, [m._probe for m in layers])
                for s, g in zip(score, grads):
                    s.add_(g.detach() ** 2)
        finally:
            for m, s in zip(layers, score):
                m._probe = None
                with torch.no_grad():
                    m.task_support.copy_(torch.topk(s, m.rosa_values.numel()).indices.sort().values)
            model.train(was_training)
