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
    files that are not images are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightlabError(f"{folder}: not a folder of class sub-folders")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise WeightlabError(f"{folder}: no class sub-folders found")
    files = [
        (f, ci)
        for ci, c in enumerate(classes)
        for f in sorted((folder / c).iterdir())
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise WeightlabError(f"{folder}: no images found")
    return classes, files


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
