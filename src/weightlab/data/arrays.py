"""In-memory image arrays and the per-model input transform (channels, size, normalisation)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelInput:
    """What a model expects: ``input_size`` (C, H, W) and the normalisation it was trained with."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, model_cfg) -> ModelInput | None:
        """``model_cfg`` as a transform: a ``ModelInput`` itself, one made from a model configuration, or
        None (batches only scaled to [0, 1])."""
        if model_cfg is None or isinstance(model_cfg, ModelInput):
            return model_cfg
        return cls.from_cfg(model_cfg)

    @classmethod
    def from_cfg(cls, cfg) -> ModelInput:
        """From a model's :class:`~weightlab.models.ModelCfg` (or its JSON form)."""
        if isinstance(cfg, dict):
            return cls(tuple(cfg["input_size"]), tuple(cfg["mean"]), tuple(cfg["std"]))
        return cls(tuple(cfg.input_size), tuple(cfg.mean), tuple(cfg.std))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images (N, C, H, W) -> normalised float32 batch of ``input_size``."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        c, h, w = self.input_size
        if x.shape[1] != c:
            if x.shape[1] == 1:
                x = x.expand(-1, c, -1, -1)
            elif c == 1:
                x = x.mean(1, keepdim=True)
            else:
                raise ValueError(f"cannot map {x.shape[1]} channels to {c}")
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=x.shape[-1] > w)
        mean = torch.tensor(self.mean[:c], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std[:c], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def head_index(length: int, n: int | None, seed: int = 0) -> torch.Tensor | None:
    """The sorted indices of a seeded random subset of ``n`` of ``length`` samples (None: all of them)."""
    if n is None or n >= length:
        return None
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclass
class ImageArrays:
    """A labelled image set held in memory: ``images`` (N, C, H, W) uint8 or float in [0, 1]."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: Sequence[str]
    name: str = ""
    augment: str | None = None  # crop / crop_flip on training (shuffled) batches, see weightlab.data.augment

    def __post_init__(self) -> None:
        from weightlab.data.augment import check_augment

        check_augment(self.augment)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | Sequence[int]) -> ImageArrays:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageArrays(self.images[index], self.labels[index], self.classes, self.name, self.augment)

    def fingerprint(self) -> str:
        """sha256 of the images, labels and class names: the identity of the data a resumable run records."""
        import json

        from weightlab.io import tensors_sha256

        return tensors_sha256({"images": self.images, "labels": self.labels}, json.dumps(list(self.classes)).encode())

    def with_options(self, augment: str | None = None) -> ImageArrays:
        """The same images with another train-time ``augment`` (None: none)."""
        return ImageArrays(self.images, self.labels, self.classes, self.name, augment)

    def head(self, n: int | None, seed: int = 0) -> ImageArrays:
        """A random (seeded) subset of ``n`` samples, or everything when ``n`` is None."""
        idx = head_index(len(self), n, seed)
        return self if idx is None else self.subset(idx)

    def relabel(self, labels: torch.Tensor, classes: Sequence[str]) -> ImageArrays:
        """The same images with other labels and class names."""
        return ImageArrays(self.images, labels, list(classes), self.name, self.augment)

    def batches(
        self, batch_size: int, model_cfg=None, *, shuffle: bool = False, seed: int = 0, device=None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` with ``x`` transformed for the model (``model_cfg``: a ``ModelCfg`` or a
        :class:`ModelInput`), or just scaled to [0, 1]; with ``device``, the stored (uint8) batch moves
        there first and is converted there. Shuffled (training) batches are augmented with ``augment``,
        drawn from ``seed``."""
        from weightlab.data.augment import augment_batch
        from weightlab.engine import resolve_device

        dev = resolve_device(device)
        transform = ModelInput.of(model_cfg)
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)) if shuffle else None
        g = torch.Generator().manual_seed(seed * 7 + 3) if shuffle and self.augment else None
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
            x, y = self.images[idx], self.labels[idx]
            if dev.type != "cpu":
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if g is not None:
                x = augment_batch(x, self.augment, g)
            x = transform(x) if transform is not None else (x.float() / 255.0 if x.dtype == torch.uint8 else x)
            yield x, y
