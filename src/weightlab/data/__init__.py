"""Real image data as in-memory arrays, adapted per batch to a model's input convention.

Data sets: ``digits`` (scikit-learn, always available), ``mnist``, ``fashion_mnist``, ``cifar10``
(the shared JPEG tar, extracted once into the cache) and ``imagefolder:PATH``. The root is
``--data-root`` / ``$WEIGHTLAB_DATA`` / ``<shared>/data``.

>>> ds = load_dataset("cifar10", "test")
>>> for x, y in ds.batches(256, model.weightlab_cfg): ...
"""

from weightlab.data.arrays import ImageArrays, ModelInput
from weightlab.data.sources import DATASETS, load_dataset

__all__ = ["ImageArrays", "ModelInput", "DATASETS", "load_dataset"]
