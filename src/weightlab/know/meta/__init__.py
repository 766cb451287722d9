"""KNOWN meta-training: collect progressive-forgetting runs of small networks into a sharded
meta-dataset (:mod:`collect`, local Ray / worker processes), turn trajectories into (sequence,
target) rows (:mod:`rows`), train the three hypermodels (:mod:`train`) with whole runs held out and
write the model card (:mod:`pipeline`). The shipped result lives in ``weightlab/know/weights``."""

from weightlab.know.meta.rows import trajectory_rows
from weightlab.know.meta.train import MetaTrainConfig, baseline_l1, train_known

__all__ = ["trajectory_rows", "MetaTrainConfig", "train_known", "baseline_l1"]
