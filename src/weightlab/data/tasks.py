"""Tasks and task sequences built from real data, with train / validation / test splits.

A task is a set of classes of one data set with its own head. Labels are remapped to
``0..len(classes)-1`` inside a task. Validation is carved out of the data set's *training* split
(disjoint from the task's training samples); the reported number comes from the official *test*
split, which no model selection ever sees.

Specs: ``mnist`` (all classes), ``cifar10:0-4`` (classes 0..4), ``fashion_mnist:0,2,4``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from weightlab.data.arrays import ImageArrays
from weightlab.data.sources import load_dataset
from weightlab.errors import WeightlabError
from weightlab.registry import Registry

# name -> task specs. "multi": several data sets, each split into class groups (paper Sec. 3 spirit);
# "split-*": one data set cut into class-disjoint tasks.
_SEQUENCES = {
    "multi": ["mnist:0-4", "mnist:5-9", "fashion_mnist:0-4", "fashion_mnist:5-9", "cifar10:0-4", "cifar10:5-9"],
    "split-fmnist": [
        "fashion_mnist:0-1",
        "fashion_mnist:2-3",
        "fashion_mnist:4-5",
        "fashion_mnist:6-7",
        "fashion_mnist:8-9",
    ],
    "split-cifar10": ["cifar10:0-1", "cifar10:2-3", "cifar10:4-5", "cifar10:6-7", "cifar10:8-9"],
    "digits": ["digits:0-4", "digits:5-9"],
}
SEQUENCES: Registry[list[str]] = Registry("task sequence")
for _name, _specs in _SEQUENCES.items():
    SEQUENCES.add(_name, _specs, summary=", ".join(_specs))


@dataclass(frozen=True)
class SplitSizes:
    """Samples per task drawn from each split (None: all that the split has)."""

    train: int | None = 1000
    val: int | None = 300
    test: int | None = 1000

    def __post_init__(self) -> None:
        for split, least in (("train", 1), ("val", 0), ("test", 0)):
            n = getattr(self, split)
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < least):
                raise WeightlabError(f"{split} samples per task must be an integer >= {least} (None: all), got {n!r}")


@dataclass
class Task:
    name: str
    dataset: str
    classes: list[str]
    class_ids: list[int]
    train: ImageArrays = field(repr=False)
    val: ImageArrays = field(repr=False)
    test: ImageArrays = field(repr=False)
    spec: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def fingerprint(self) -> str | None:
        """sha256 over the train, validation and test samples (None for splits streamed from disk)."""
        import hashlib

        parts = [getattr(split, "fingerprint", None) for split in (self.train, self.val, self.test)]
        if any(p is None for p in parts):
            return None
        return hashlib.sha256("|".join(p() for p in parts).encode()).hexdigest()

    def summary(self) -> dict:
        return dict(
            name=self.name,
            spec=self.spec,
            dataset=self.dataset,
            classes=self.classes,
            train=len(self.train),
            val=len(self.val),
            test=len(self.test),
        )


def parse_task_spec(spec: str) -> tuple[str, list[int] | None]:
    """``cifar10:0-4`` -> ('cifar10', [0..4]); ``mnist`` -> ('mnist', None); a data set named with a
    colon keeps it: ``imagefolder:/data/flowers:0-9``, ``tv:CIFAR100:0-49``."""
    if spec.startswith(("imagefolder:", "tv:")):
        prefix, _, rest = spec.partition(":")
        head, colon, tail = rest.rpartition(":")
        if prefix == "imagefolder" and Path(rest).is_dir():  # a folder whose name ends like a class list
            name, sel = spec, ""
        elif colon and tail and all(ch.isdigit() or ch in ",-" for ch in tail):
            name, sel = f"{prefix}:{head}", tail
        else:
            name, sel = spec, ""
    else:
        name, _, sel = spec.partition(":")
    if not name:
        raise WeightlabError(f"bad task spec '{spec}': expected DATASET or DATASET:CLASSES (e.g. cifar10:0-4)")
    if not sel:
        return name, None
    ids: list[int] = []
    try:
        for part in sel.split(","):
            lo, dash, hi = part.partition("-")
            ids.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    except ValueError:
        raise WeightlabError(f"bad class list in task spec '{spec}' (use e.g. 0-4 or 0,3,5)") from None
    if len(set(ids)) != len(ids) or not ids:
        raise WeightlabError(f"task spec '{spec}' names no classes or repeats one")
    return name, ids


def _select(arrays: ImageArrays, class_ids: list[int]) -> ImageArrays:
    keep = torch.isin(arrays.labels, torch.tensor(class_ids))
    sub = arrays.subset(torch.nonzero(keep).flatten())
    remap = torch.full((int(arrays.labels.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(class_ids)] = torch.arange(len(class_ids))
    return sub.relabel(remap[sub.labels], [arrays.classes[i] for i in class_ids])


def build_task(
    spec: str,
    root: str | Path | None = None,
    sizes: SplitSizes = SplitSizes(),
    data_seed: int = 0,
    stream: dict | None = None,
    val_from: str = "train",
) -> Task:
    """Load one task: its classes of the train split (split again into train and validation) and
    of the test split. ``data_seed`` fixes which samples are drawn, independently of the method seed.
    ``val_from="test"`` draws the validation images from the test split instead (a seeded part of it; the
    test images are drawn from the rest): for a backbone pretrained on the task's own training split, whose
    validation images would otherwise be images it was trained on.
    ``stream`` (``dict(workers=8, augment="crop_flip")``): read the images from disk while training
    (:class:`~weightlab.data.streaming.StreamingImages`; the augmentation on the training split only)."""
    dataset, class_ids = parse_task_spec(spec)
    opts = dict(stream or {})
    augment = opts.pop("augment", None)
    train_full = load_dataset(dataset, "train", root, stream=None if stream is None else opts)
    test_full = load_dataset(dataset, "test", root, stream=None if stream is None else opts)
    n_classes = len(train_full.classes)
    class_ids = class_ids if class_ids is not None else list(range(n_classes))
    bad = [c for c in class_ids if not 0 <= c < n_classes]
    if bad:
        shown = f"{bad[:5]}" + (f" ... ({len(bad)} in all)" if len(bad) > 5 else "")
        raise WeightlabError(f"task spec '{spec}': class id(s) {shown} outside 0..{n_classes - 1} of {dataset}")
    if len(class_ids) < 2:
        raise WeightlabError(f"task spec '{spec}': one class is not a classification task (name 2 or more)")
    if list(test_full.classes) != list(train_full.classes):
        raise WeightlabError(f"{dataset}: its train and test splits name different classes")
    if val_from not in ("train", "test"):
        raise WeightlabError(f"val_from must be 'train' or 'test', got {val_from!r}")
    pool, test = _select(train_full, class_ids), _select(test_full, class_ids)
    g = torch.Generator().manual_seed(data_seed)
    order = torch.randperm(len(pool), generator=g)
    if val_from == "test":
        n_val = min(sizes.val if sizes.val is not None else len(test) // 5, len(test) // 2)
        t_order = torch.randperm(len(test), generator=torch.Generator().manual_seed(data_seed + 7))
        val = test.subset(t_order[:n_val].sort().values)
        test = test.subset(t_order[n_val:].sort().values)
        rest = order
    else:
        n_val = min(sizes.val if sizes.val is not None else len(pool) // 5, len(pool) // 2)
        val = pool.subset(order[:n_val].sort().values)
        rest = order[n_val:]
    n_train = len(rest) if sizes.train is None else min(sizes.train, len(rest))
    train = pool.subset(rest[:n_train].sort().values)
    if augment is not None:
        from weightlab.data.streaming import StreamingImages

        if not isinstance(train, StreamingImages):
            train = StreamingImages.from_arrays(train)
        train = train.with_options(augment=augment)
    test = test.head(sizes.test, seed=data_seed)
    name = spec.replace(":", "_").replace(",", "+").replace("/", "-").strip("_-")
    return Task(name, dataset, list(train.classes), class_ids, train, val, test, spec)


def _split_specs(text: str) -> list[str]:
    """'mnist:0-4,7,cifar10' -> ['mnist:0-4,7', 'cifar10']: a piece starting with a digit continues a class list."""
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if piece and piece[0].isdigit() and specs and ":" in specs[-1]:
            specs[-1] += "," + piece
        elif piece:
            specs.append(piece)
    return specs


def build_sequence(
    name_or_specs: str | list[str],
    root: str | Path | None = None,
    sizes: SplitSizes = SplitSizes(),
    data_seed: int = 0,
    stream: dict | None = None,
    val_from: str = "train",
) -> list[Task]:
    """A named sequence (see :data:`SEQUENCES`) or a comma-separated list / list of task specs."""
    if isinstance(name_or_specs, str):
        specs = SEQUENCES.get(name_or_specs) if name_or_specs in SEQUENCES else _split_specs(name_or_specs)
    else:
        specs = list(name_or_specs)
    if not specs:
        raise WeightlabError("empty task sequence")
    tasks = [build_task(s, root, sizes, data_seed, stream, val_from) for s in specs]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise WeightlabError(f"task sequence repeats a task: {names}")
    return tasks
