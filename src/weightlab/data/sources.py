"""Loaders for each supported data set; each returns :class:`ImageArrays` for a split."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from weightlab import paths
from weightlab.data.arrays import ImageArrays
from weightlab.data.images import decode_image, list_image_folder
from weightlab.errors import WeightlabError
from weightlab.registry import Registry

SPLITS = ("train", "test")


def _require_root(root: str | Path | None, what: str) -> Path:
    r = Path(root) if root is not None else paths.data_root()
    if r is None or not Path(r).is_dir():
        raise WeightlabError(
            f"{what} needs a data root: pass a data root (root=DIR) or set WEIGHTLAB_DATA "
            "(or WEIGHTLAB_SHARED) to the folder holding the shared data"
        )
    return Path(r)


def load_digits(split: str, root=None) -> ImageArrays:
    """scikit-learn's 1,797 8x8 digits; a fixed stratified 80/20 train/test split (seed 0)."""
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    d = _sk_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=0, stratify=d.target)
    idx = idx_train if split == "train" else idx_test
    images = torch.from_numpy(d.images[idx] / 16.0).float().unsqueeze(1)
    return ImageArrays(images, torch.from_numpy(d.target[idx]).long(), [str(i) for i in range(10)], "digits")


def _idx_set(folder: str, classes: list[str]) -> Callable[[str, object], ImageArrays]:
    def load(split: str, root=None) -> ImageArrays:
        raw = _require_root(root, folder) / folder / "raw"
        prefix = "train" if split == "train" else "t10k"
        img_path, lab_path = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        for p in (img_path, lab_path):
            if not p.is_file():
                raise WeightlabError(f"{p}: not found (expected the decompressed IDX files of {folder})")
        images = _read_idx(img_path, 2051)
        labels = _read_idx(lab_path, 2049)
        return ImageArrays(
            torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), classes, folder.lower()
        )

    return load


def _read_idx(path: Path, magic: int) -> np.ndarray:
    data = path.read_bytes()
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        raise WeightlabError(f"{path}: not an IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise WeightlabError(f"{path}: truncated IDX file ({body.size} of {int(np.prod(dims))} bytes)")
    return body.reshape(dims).copy()


FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _cifar10_folder(root) -> Path:
    """Extract ``cifar10-jpeg.tar`` once into the cache (atomically) and return the extracted folder."""
    data_root = _require_root(root, "cifar10")
    if (data_root / "cifar10-jpeg" / "test").is_dir():
        return data_root / "cifar10-jpeg"
    tar = data_root / "cifar10-jpeg.tar"
    if not tar.is_file():
        raise WeightlabError(f"{tar}: not found (the CIFAR-10 JPEG tar of the shared data)")
    dest = paths.cache_root() / "cifar10-jpeg"
    if not (dest / "test").is_dir():
        # extract into a folder of our own, then rename it into place; when another process (a parallel
        # worker) got there first, its copy is the same: keep it and drop ours
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cifar10-jpeg.", suffix=".tmp", dir=dest.parent))
        try:
            with tarfile.open(tar) as tf:
                tf.extractall(tmp, filter="data")
            inner = tmp / "cifar10-jpeg"
            try:
                os.replace(inner if inner.is_dir() else tmp, dest)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (dest / "test").is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_image_folder(folder: Path, name: str, size: int | None = None) -> ImageArrays:
    """Decode an ImageFolder (``<folder>/<class>/<image>``) into uint8 arrays; a decoded copy is
    cached as ``.npz`` in the weightlab cache so the next load is instant. The copy records the listing
    it was decoded from (every file's path, size and modification time) and is decoded again when the
    folder changed or the copy does not read back whole."""
    classes, files = list_image_folder(folder)
    listing = _listing_digest(folder, files)
    key = hashlib.sha1(f"{folder.resolve()}|{size}".encode()).hexdigest()[:12]
    cache = paths.cache_root() / "decoded" / f"{name}-{key}.npz"
    cached = _read_decoded(cache, listing, len(files))
    if cached is not None:
        return ImageArrays(*cached, classes, name)
    arrays, labels = [], []
    for f, ci in files:
        arrays.append(decode_image(f, size))
        labels.append(ci)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise WeightlabError(f"{folder}: images have different sizes {sorted(shapes)[:3]}; pass a size to resize")
    images = np.stack(arrays)
    labels_np = np.asarray(labels, dtype=np.int64)
    from weightlab.io import atomic_path

    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=images, labels=labels_np, listing=np.asarray(listing))
    return ImageArrays(torch.from_numpy(images), torch.from_numpy(labels_np), classes, name)


def _listing_digest(folder: Path, files: list[tuple[Path, int]]) -> str:
    """sha1 of every image's path (relative to ``folder``), class, size and modification time (ns): a
    file replaced, added or removed changes it (reading every byte would cost seconds per load)."""
    h = hashlib.sha1()
    for f, ci in files:
        st = f.stat()
        h.update(f"{f.relative_to(folder)}|{ci}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_decoded(cache: Path, listing: str, count: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (images, labels) when ``cache`` was decoded from this listing and reads back whole
    (the zip's CRCs), else None."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as z:
            if "listing" not in z.files or str(z["listing"]) != listing:
                return None
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None
    if images.shape[0] != count or labels.shape[0] != count:
        return None
    return torch.from_numpy(images), torch.from_numpy(labels)


def _image_folder_split(folder: Path, split: str, stream: dict | None):
    """One split of ``imagefolder:<folder>`` (see :func:`weightlab.data.images.image_folder_splits`): train/
    and test/ must name the same classes; without test/, a seeded fifth of every class of the training
    images is the test split (said once, as a :class:`~weightlab.errors.WeightlabNotice`), never the
    training images themselves."""
    import warnings

    from weightlab.data.images import held_out, image_folder_splits
    from weightlab.errors import WeightlabNotice

    where = image_folder_splits(folder)

    def load(path: Path, label: str):
        if stream is not None:
            from weightlab.data.streaming import StreamingImages

            return StreamingImages.image_folder(path, label, **stream)
        return load_image_folder(path, label)

    label = f"imagefolder-{folder.name}-{split}"
    if where["test"] is not None:
        if split == "test":
            train_classes, _ = list_image_folder(where["train"])
            test_classes, _ = list_image_folder(where["test"])
            if test_classes != train_classes:
                raise WeightlabError(
                    f"imagefolder:{folder}: train/ has classes {_names(train_classes)} but test/ has "
                    f"{_names(test_classes)}: both need the same class folders"
                )
        return load(where[split], label)
    _, files = list_image_folder(where["train"])
    mask = torch.tensor(held_out(files))
    arrays = load(where["train"], f"imagefolder-{folder.name}")
    warnings.warn(  # once the images loaded (a bad image is then the one line)
        f"imagefolder:{folder} has no test/ folder: a seeded fifth of every class ({int(mask.sum())} of "
        f"{len(files)} images) is held out as the test split, the rest is the training split",
        WeightlabNotice,
        stacklevel=2,
    )
    keep = mask if split == "test" else ~mask
    return arrays.subset(torch.nonzero(keep).flatten())


def _names(classes: list[str], n: int = 6) -> str:
    shown = ", ".join(classes[:n]) + (f", ... ({len(classes)} in all)" if len(classes) > n else "")
    return f"[{shown}]"


def load_cifar10(split: str, root=None) -> ImageArrays:
    return load_image_folder(_cifar10_folder(root) / split, f"cifar10-{split}")


#: the built-in data sets by name: ``DATASETS[name](split, root)`` loads one split
DATASETS: Registry[Callable[..., ImageArrays]] = Registry("data set")
for _name, _loader in {
    "digits": load_digits,
    "mnist": _idx_set("MNIST", [str(i) for i in range(10)]),
    "fashion_mnist": _idx_set("FashionMNIST", FASHION_CLASSES),
    "cifar10": load_cifar10,
}.items():
    DATASETS.add(_name, _loader, summary=f"the {_name} data set")


def load_dataset(
    name: str,
    split: str = "test",
    root: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    stream: dict | None = None,
):
    """Load ``split`` ('train' or 'test') of a data set, optionally a seeded random subset of ``limit``:
    in memory (:class:`ImageArrays`), or read from disk while training when ``stream`` is given
    (``dict(workers=8)``; :class:`~weightlab.data.streaming.StreamingImages`). ``tv:NAME`` (a torchvision
    data set in its folder under the data root, e.g. ``tv:CIFAR100``) always streams."""
    if split not in SPLITS:
        raise WeightlabError(f"unknown split '{split}' (use one of {', '.join(SPLITS)})")
    if name.startswith("tv:"):
        from weightlab.data.streaming import StreamingImages

        arrays = StreamingImages.torchvision(name[3:], _require_root(root, name), split, **(stream or {}))
    elif name.startswith("imagefolder:"):
        arrays = _image_folder_split(Path(name.split(":", 1)[1]), split, stream)
    elif name in DATASETS:
        arrays = DATASETS[name](split, root)
    else:
        raise WeightlabError(
            f"unknown data set '{name}' (use one of {', '.join(DATASETS)}, imagefolder:PATH or tv:NAME)"
        )
    return arrays.head(limit, seed)
