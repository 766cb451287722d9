"""Task-incremental learning on a shared backbone: per-task coefficients / adapters and heads,
task artifacts, switching, and the benchmark (RECAST paper Sec. 3, Tables 1, 2, 4, Fig. 3).

>>> from weightlab.data import build_sequence
>>> from weightlab.incremental import TaskModel, parse_method, learn_sequence, AdaptConfig
>>> tasks = build_sequence("multi")                     # MNIST / Fashion-MNIST / CIFAR-10 class groups
>>> tm = TaskModel.from_base(recast_base, parse_method("recast"))
>>> result = learn_sequence(tm, tasks, AdaptConfig(epochs=10), out="runs/tasks")   # resumable
>>> tm.set_task(tasks[0].name); tm.predict(x, tasks[1].name)
"""

from weightlab.incremental.artifact import (
    load_base,
    load_task,
    load_task_model,
    save_base,
    save_task,
)
from weightlab.incremental.learner import AdaptConfig, TaskResult, accuracy, learn_task
from weightlab.incremental.methods import ADAPTERS, MethodSpec, method_names, parse_method
from weightlab.incremental.model import TaskModel, detach_classifier, fingerprint
from weightlab.incremental.sequence import SequenceResult, learn_sequence

__all__ = [
    "load_base",
    "load_task",
    "load_task_model",
    "save_base",
    "save_task",
    "AdaptConfig",
    "TaskResult",
    "accuracy",
    "learn_task",
    "ADAPTERS",
    "MethodSpec",
    "method_names",
    "parse_method",
    "TaskModel",
    "detach_classifier",
    "fingerprint",
    "SequenceResult",
    "learn_sequence",
]
