"""Piggyback (Mallya & Lazebnik 2018): a real-valued mask per weight, binarised against a learned
threshold with a straight-through estimator; W = W_RECAST * M (Eq. 8). Stored per task as bits.
Defaults from the authors' RECAST combination: Adam, lr 1e-4 (masks), 3e-2 (head), 5e-4 (coefficients)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from weightlab.incremental.methods.base import ADAPTERS, Adapter
from weightlab.incremental.methods.targets import forward_with_weight, weight_layers
from weightlab.models import set_submodule
from weightlab.registry import option

MASK_INIT, THRESHOLD_INIT = 1e-2, 5e-3


class MaskedLayer(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.base_layer = layer
        w = layer.weight
        self.piggyback_mask = nn.Parameter(torch.full_like(w, MASK_INIT))
        self.piggyback_threshold = nn.Parameter(torch.tensor(THRESHOLD_INIT, dtype=w.dtype))

    def binary_mask(self) -> torch.Tensor:
        s = self.piggyback_mask - self.piggyback_threshold
        hard = (s > 0).to(s.dtype)
        return hard + (s - s.detach())  # forward: exactly the 0/1 mask; backward: identity (STE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward_with_weight(self.base_layer, x, self.base_layer.weight * self.binary_mask())

    def merged_weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        return w * (self.piggyback_mask > self.piggyback_threshold).to(w.dtype)


@dataclass
class PiggybackOptions:
    mask_lr: float = option(1e-4, "learning rate of the real-valued masks", minimum=0.0)
    head_lr: float = option(3e-2, "learning rate of the task head", minimum=0.0)
    coef_lr: float = option(5e-4, "learning rate of RECAST coefficients (recast+piggyback)", minimum=0.0)


@ADAPTERS.register("piggyback", display="Piggyback", paper="Mallya & Lazebnik 2018", options=PiggybackOptions)
class PiggybackAdapter(Adapter):
    """Piggyback: a binary mask per weight, learnt through a straight-through estimator."""

    wrapper = MaskedLayer

    def inject(self, backbone: nn.Module, family) -> None:
        for name in weight_layers(backbone):
            set_submodule(backbone, name, MaskedLayer(backbone.get_submodule(name)))

    def is_trainable(self, name: str) -> bool:
        return ".piggyback_" in name

    # the authors' recipe sets every rate (masks, head, coefficients: the options); the learner's lr and
    # coef_lr do not reach it, so a command that passes them is refused and the fair protocol does not tune it
    owns_rates = True

    def optimizer(self) -> str:
        return "adam"

    def param_groups(self, named, head, lr):
        masks = [p for n, p in named.items() if ".piggyback_" in n]
        other = [p for n, p in named.items() if ".piggyback_" not in n]
        groups = [dict(params=masks, lr=self.opts.mask_lr), dict(params=list(head), lr=self.opts.head_lr)]
        if other:
            groups.append(dict(params=other, lr=self.opts.coef_lr))
        return groups

    def pack_state(self, state):
        """Masks as packed bits (what a deployment stores); thresholds are dropped with them."""
        out = {}
        for k, v in state.items():
            if k.endswith(".piggyback_mask"):
                t = state[k[: -len("mask")] + "threshold"]
                bits = np.packbits((v > t).flatten().cpu().numpy().astype(np.uint8))
                out[k + "_bits"] = torch.from_numpy(bits)
            elif not k.endswith(".piggyback_threshold"):
                out[k] = v
        return out

    def unpack_state(self, state, like):
        """Bits back to a (mask, threshold) pair with the same binary mask (``like``: shapes)."""
        out = {}
        for k, v in state.items():
            if k.endswith(".piggyback_mask_bits"):
                key = k[: -len("_bits")]
                ref = like[key]
                bits = np.unpackbits(v.cpu().numpy())[: ref.numel()].reshape(tuple(ref.shape))
                out[key] = torch.from_numpy(bits.astype(np.float32)).to(ref.device, ref.dtype) * MASK_INIT
                out[key[: -len("mask")] + "threshold"] = torch.tensor(THRESHOLD_INIT, dtype=ref.dtype).to(ref.device)
            else:
                out[k] = v
        return out
