"""Train-time augmentation of uint8 image batches, seeded (the same batches for the same seed).

``crop``: a random crop of the image's size after 4-pixel zero padding (small shifts: digits keep their
meaning). ``crop_flip``: the CIFAR recipe, ``crop`` and a horizontal flip with probability ½.
``resized_crop`` (torchvision's RandomResizedCrop and a flip) is drawn per sample by the streaming
reader, which decodes one image at a time (:mod:`weightlab.data.streaming`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from weightlab.errors import WeightlabError

BATCH_AUGMENTATIONS = ("crop", "crop_flip")
PAD = 4


def check_augment(kind: str | None, allowed=BATCH_AUGMENTATIONS) -> None:
    if kind is not None and kind not in allowed:
        raise WeightlabError(f"unknown augmentation '{kind}' (use {' or '.join(a for a in allowed if a)})")


def augment_batch(x: torch.Tensor, kind: str, g: torch.Generator) -> torch.Tensor:
    """``x`` (B, C, H, W) augmented per sample with draws from ``g`` (a CPU generator); stays on its device."""
    check_augment(kind)
    b, _, h, w = x.shape
    top = torch.randint(0, 2 * PAD + 1, (b,), generator=g).to(x.device)
    left = torch.randint(0, 2 * PAD + 1, (b,), generator=g).to(x.device)
    flip = (torch.rand(b, generator=g) < 0.5).to(x.device) if kind == "crop_flip" else None
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (B, W)
    if flip is not None:
        cols = torch.where(flip[:, None], cols.flip(-1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


__all__ = ["BATCH_AUGMENTATIONS", "augment_batch", "check_augment"]
