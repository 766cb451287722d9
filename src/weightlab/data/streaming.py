"""Image sets read from disk while training: an ImageFolder tree or a torchvision data set's folder,
decoded by ``DataLoader`` workers, shipped as uint8 in pinned memory and normalised on the device.

:class:`StreamingImages` has the interface of :class:`~weightlab.data.ImageArrays` (``labels``,
``classes``, ``subset``, ``head``, ``batches``), so tasks, task learning, forgetting and transfer use
either; only the labels are held in memory, so a data set larger than memory works. For the same
seed, the batches are the in-memory path's batches (the same order, the same pixels).

>>> train = StreamingImages.image_folder("/data/flowers102/train", workers=8)
>>> for x, y in train.batches(64, model.weightlab_cfg, shuffle=True, seed=0, device="cuda"): ...

Train-time augmentation (an option the suites set): ``crop`` / ``crop_flip`` (CIFAR-style: a random crop
after 4-pixel padding, and a horizontal flip; :mod:`weightlab.data.augment`) or ``resized_crop``
(RandomResizedCrop to the model's input and flip, the 224-px recipe), drawn per sample in the workers
from the batch seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from weightlab.data.arrays import ModelInput, head_index
from weightlab.data.augment import BATCH_AUGMENTATIONS, augment_batch, check_augment
from weightlab.data.images import decode_image, list_image_folder
from weightlab.errors import WeightlabError

AUGMENTATIONS = (None, "crop", "crop_flip", "resized_crop")


class _Source:
    """Index -> (uint8 CHW tensor, label); picklable, so that DataLoader workers can open it."""

    def __len__(self) -> int:
        raise NotImplementedError

    def image(self, i: int) -> torch.Tensor:
        raise NotImplementedError


class _FolderSource(_Source):
    def __init__(self, files: list[str], size: int | None):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        return torch.from_numpy(decode_image(self.files[i], self.size))


class _MemorySource(_Source):
    """Images already in memory (an :class:`~weightlab.data.ImageArrays`), e.g. to augment a small set."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        return self.images[i]


class _TorchvisionSource(_Source):
    """A torchvision data set already on disk (``download=False``); its PIL images or arrays as uint8."""

    def __init__(self, name: str, root: str, train: bool):
        self.name, self.root, self.train = name, root, train
        self._ds = None

    def _open(self):
        if self._ds is None:
            import torchvision

            cls = getattr(torchvision.datasets, self.name)
            try:
                self._ds = cls(self.root, train=self.train, download=False)
            except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True"
                why = str(e).split(".")[0] or "not readable"
                raise WeightlabError(
                    f"torchvision {self.name} in {self.root}: {why}; weightlab never downloads: put it there first "
                    f"(on a machine with a network: torchvision.datasets.{self.name}({str(self.root)!r}, "
                    "download=True)) or give --data-root the folder that holds it"
                ) from None
        return self._ds

    def __getstate__(self):
        return {**self.__dict__, "_ds": None}  # workers open their own copy

    def __len__(self) -> int:
        return len(self._open())

    def targets(self) -> list[int]:
        return [int(t) for t in self._open().targets]

    def classes(self) -> list[str]:
        return list(self._open().classes)

    def image(self, i: int) -> torch.Tensor:
        img, _ = self._open()[i]
        arr = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img, dtype=np.uint8)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())


class _Dataset(torch.utils.data.Dataset):
    """(source, index map, labels, augmentation) as a map-style data set of uint8 images."""

    def __init__(self, source: _Source, index: torch.Tensor, labels: torch.Tensor, augment, out_hw, seed: int):
        self.source, self.index, self.labels = source, index, labels
        self.augment, self.out_hw, self.seed = augment, out_hw, seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        img = self.source.image(int(self.index[i]))
        if self.augment is not None:
            img = _augment(img, self.augment, self.out_hw, torch.Generator().manual_seed(self.seed * 1_000_003 + i))
        return img, self.labels[i]


def _augment(img: torch.Tensor, kind: str, out_hw, g: torch.Generator) -> torch.Tensor:
    """One sample's augmentation, drawn from ``g`` (the same in any worker)."""
    import torch.nn.functional as F

    c, h, w = img.shape
    if kind in BATCH_AUGMENTATIONS:  # the in-memory path's crop (and flip), on a batch of one
        return augment_batch(img.unsqueeze(0), kind, g).squeeze(0)
    # resized_crop: scale (0.08, 1), ratio (3/4, 4/3), as torchvision's RandomResizedCrop
    import math

    area = h * w
    box = (0, 0, h, w)
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(0.08, 1.0, generator=g))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            box = (top, left, ch, cw)
            break
    top, left, ch, cw = box
    crop = img[:, top : top + ch, left : left + cw].unsqueeze(0).float()
    size = tuple(out_hw) if out_hw is not None else (h, w)
    out = F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True).squeeze(0)
    img = out.round().clamp(0, 255).to(torch.uint8) if img.dtype == torch.uint8 else out.to(img.dtype)
    if bool(torch.rand(1, generator=g) < 0.5):
        img = img.flip(-1)
    return img


@dataclass
class StreamingImages:
    """A labelled image set on disk, read in batches by ``DataLoader`` workers (see the module doc)."""

    source: _Source = field(repr=False)
    index: torch.Tensor = field(repr=False)  # rows of the source this set holds
    labels: torch.Tensor = field(repr=False)
    classes: Sequence[str]
    name: str = ""
    workers: int = 0
    pin_memory: bool | None = None  # None: when the batches go to a GPU
    augment: str | None = None

    def __post_init__(self) -> None:
        check_augment(self.augment, AUGMENTATIONS)

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def image_folder(cls, folder: str | Path, name: str | None = None, size: int | None = None, **kw):
        """An ImageFolder tree (``<folder>/<class>/<image>``), classes and files in sorted order (as
        :func:`weightlab.data.sources.load_image_folder` reads them)."""
        folder = Path(folder)
        classes, files = list_image_folder(folder)
        labels = torch.tensor([ci for _, ci in files], dtype=torch.long)
        source = _FolderSource([str(f) for f, _ in files], size)
        return cls(source, torch.arange(len(files)), labels, classes, name or folder.name, **kw)

    @classmethod
    def from_arrays(cls, arrays, **kw) -> StreamingImages:
        """An in-memory :class:`~weightlab.data.ImageArrays` behind the same interface (to augment it)."""
        n = len(arrays)
        return cls(
            _MemorySource(arrays.images), torch.arange(n), arrays.labels, list(arrays.classes), arrays.name, **kw
        )

    @classmethod
    def torchvision(cls, dataset: str, root: str | Path, split: str = "train", size: int | None = None, **kw):
        """A torchvision data set (``CIFAR100``, ``CIFAR10``, ``MNIST`` ...) from its folder under ``root``;
        never downloaded (its images have one size already: ``size`` is not used)."""
        import inspect

        import torchvision

        cls_ = getattr(torchvision.datasets, dataset, None)
        if cls_ is None:
            raise WeightlabError(f"torchvision has no data set '{dataset}'")
        if (
            not inspect.isclass(cls_)
            or not issubclass(cls_, torchvision.datasets.VisionDataset)
            or "train" not in inspect.signature(cls_.__init__).parameters
        ):
            raise WeightlabError(
                f"tv:{dataset}: not a torchvision data set with train and test splits (tv:NAME reads those that take "
                "train=True/False, e.g. CIFAR10, CIFAR100, MNIST, FashionMNIST; a folder tree is imagefolder:PATH)"
            )
        source = _TorchvisionSource(dataset, str(root), split == "train")
        labels = torch.tensor(source.targets(), dtype=torch.long)
        return cls(source, torch.arange(len(labels)), labels, source.classes(), f"{dataset.lower()}-{split}", **kw)

    # the ImageArrays interface --------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index) -> StreamingImages:
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, index=self.index[index], labels=self.labels[index])

    def head(self, n: int | None, seed: int = 0) -> StreamingImages:
        idx = head_index(len(self), n, seed)
        return self if idx is None else self.subset(idx)

    def relabel(self, labels: torch.Tensor, classes: Sequence[str]) -> StreamingImages:
        return replace(self, labels=labels, classes=list(classes))

    def with_options(self, **kw) -> StreamingImages:
        """A copy with other ``workers`` / ``pin_memory`` / ``augment``."""
        return replace(self, **kw)

    def batches(
        self,
        batch_size: int,
        model_cfg=None,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches: decoded by the workers, uint8 to ``device`` (pinned when it is a GPU), then
        converted and normalised for the model there. The order for ``seed`` is the in-memory path's."""
        from weightlab.engine import resolve_device

        dev = resolve_device(device)
        transform = ModelInput.of(model_cfg)
        out_hw = transform.input_size[1:] if transform is not None else None
        augment = self.augment if shuffle else None  # augmentation only where the data are trained on
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist() if shuffle else None
        pin = self.pin_memory if self.pin_memory is not None else dev.type == "cuda"
        loader = torch.utils.data.DataLoader(
            _Dataset(self.source, self.index, self.labels, augment, out_hw, seed),
            batch_size=batch_size,
            sampler=order,
            num_workers=self.workers,
            pin_memory=pin,
            persistent_workers=False,
            collate_fn=_collate,
            # workers start from a fresh interpreter, never from a fork of a process whose torch already runs
            # threads or CUDA
            multiprocessing_context=_worker_context() if self.workers else None,
        )
        for x, y in loader:
            if dev.type != "cpu":
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x = transform(x) if transform is not None else x.float() / 255.0
            yield x, y


def _worker_context() -> str:
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _collate(items):
    images = [im for im, _ in items]
    if len({tuple(im.shape) for im in images}) != 1:
        raise WeightlabError("images of different sizes in one batch: give the data set a size (or augment)")
    return torch.stack(images), torch.stack([torch.as_tensor(y) for _, y in items])


__all__ = ["StreamingImages", "AUGMENTATIONS"]
