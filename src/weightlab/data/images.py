"""Image files: an ImageFolder tree's listing and one file's decoding, shared by the in-memory loader
(:mod:`weightlab.data.sources`) and the streaming one (:mod:`weightlab.data.streaming`)."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from weightlab.errors import WeightlabError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def list_image_folder(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(classes, [(image file, class index)]) of an ImageFolder tree, classes and files in sorted order;
    files that are not images, and hidden folders and files (a name starting with '.', e.g.
    ``.ipynb_checkpoints``), are skipped. A class folder without images is refused (it would shift every
    later class's label), as is a tree with fewer than two classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightlabError(f"{folder}: not a folder of class sub-folders")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise WeightlabError(f"{folder}: no class sub-folders found")
    files = []
    for ci, c in enumerate(classes):
        own = [
            (f, ci)
            for f in sorted((folder / c).iterdir())
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not own:
            raise WeightlabError(f"{folder / c}: class folder has no images (remove it, or add its images)")
        files += own
    if len(classes) < 2:
        raise WeightlabError(f"{folder}: one class ({classes[0]}) is not a classification task: 2 or more needed")
    return classes, files


def image_folder_splits(folder: Path) -> dict:
    """Where the train and test images of ``imagefolder:<folder>`` are: ``{"train": dir, "test": dir or
    None}``. ``<folder>/train`` and ``<folder>/test`` when they exist; a folder of class folders (no
    ``train/``) is the training images. ``test`` None: no test images (a split is held out of train)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightlabError(f"imagefolder:{folder}: not a folder")
    train, test = folder / "train", folder / "test"
    if train.is_dir():
        return {"train": train, "test": test if test.is_dir() else None}
    if test.is_dir():
        raise WeightlabError(f"imagefolder:{folder}: has test/ but no train/ folder")
    return {"train": folder, "test": None}


def held_out(files: list[tuple[Path, int]], fraction: float = 0.2, seed: int = 0) -> list[bool]:
    """For each ``(file, class)``: whether it is in the test split held out when a tree has no test/
    folder: a seeded ``fraction`` of every class (at least one image; a class needs two)."""
    import random

    by_class: dict[int, list[int]] = {}
    for i, (_, c) in enumerate(files):
        by_class.setdefault(c, []).append(i)
    out = [False] * len(files)
    rng = random.Random(seed)
    for idx in by_class.values():
        if len(idx) < 2:
            raise WeightlabError(
                f"{files[idx[0]][0].parent}: one image cannot be split into train and test (add a test/ folder)"
            )
        for i in rng.sample(idx, max(1, round(fraction * len(idx)))):
            out[i] = True
    return out


def decode_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """One image file as a uint8 (3, H, W) array: RGB, resized (bilinear) to ``size`` x ``size`` if given."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
            raise WeightlabError(f"{path}: permission denied") from None
        raise WeightlabError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
