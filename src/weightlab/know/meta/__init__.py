"""KNOWN meta-training (issue 5, in progress): meta-dataset rows from trajectories and the
training loop. Collection over worker processes / Ray and the shipped weights are still to come."""

from weightlab.know.meta.rows import trajectory_rows
from weightlab.know.meta.train import MetaTrainConfig, baseline_l1, train_known

__all__ = ["trajectory_rows", "MetaTrainConfig", "train_known", "baseline_l1"]
