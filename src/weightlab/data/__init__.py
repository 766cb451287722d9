"""Real image data as in-memory arrays, adapted per batch to a model's input convention.

Data sets: ``digits`` (scikit-learn, always available), ``mnist``, ``fashion_mnist``, ``cifar10``
(the shared JPEG tar, extracted once into the cache), ``imagefolder:PATH`` and ``tv:NAME`` (a
torchvision data set on disk). Large sets stream from disk through ``DataLoader`` workers
(:class:`StreamingImages`, the same interface and, for the same seed, the same batches). The root is
``--data-root`` / ``$WEIGHTLAB_DATA`` / ``<shared>/data``. Tasks (a data set's classes with train /
validation / test splits) and named task sequences: :mod:`weightlab.data.tasks`.

>>> ds = load_dataset("cifar10", "test")
>>> for x, y in ds.batches(256, model.weightlab_cfg): ...
"""

from weightlab.data.arrays import ImageArrays, ModelInput
from weightlab.data.sources import DATASETS, load_dataset
from weightlab.data.streaming import AUGMENTATIONS, StreamingImages
from weightlab.data.tasks import SEQUENCES, SplitSizes, Task, build_sequence, build_task, parse_task_spec

__all__ = [
    "ImageArrays",
    "ModelInput",
    "DATASETS",
    "load_dataset",
    "StreamingImages",
    "AUGMENTATIONS",
    "SEQUENCES",
    "SplitSizes",
    "Task",
    "build_sequence",
    "build_task",
    "parse_task_spec",
]
