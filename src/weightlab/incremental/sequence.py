"""Learning a whole task sequence: the one resumable learn-save-verify loop (the CLI's ``recast adapt``
and the benchmark suites both run it).

>>> result = learn_sequence(task_model, tasks, AdaptConfig(epochs=10), seed=0, out="runs/tasks")
>>> result.accuracy_matrix      # R[i][j]: test accuracy of task j after learning task i
>>> result.zero_forgetting      # every task re-tested after the last equals its accuracy when learnt

With ``out``, each task is saved to ``out/tasks/<task>/`` (safetensors, then the JSON that commits it
with the tensors file's sha256) as soon as it is learnt, and a rerun loads the tasks already saved
instead of learning them again. Each task records the identity of its inputs (base, method, seed, the
data's sha256, split sizes, training options); a rerun with anything else is refused, and a task whose
tensors file does not match its JSON (a kill between the two writes) is learnt again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import weightlab.incremental.metrics as metrics
from weightlab.data.tasks import SplitSizes, Task
from weightlab.engine import place
from weightlab.errors import WeightlabError
from weightlab.incremental.artifact import load_task, read_task_meta, save_task
from weightlab.incremental.learner import AdaptConfig, TaskResult, accuracy, learn_task
from weightlab.incremental.methods import parse_method
from weightlab.incremental.model import TaskModel
from weightlab.io import file_matches, refuse_changed


@dataclass
class SequenceResult:
    tasks: list[str]
    accuracy_matrix: list[list[float]]  # R[i][j], j <= i
    accuracy_when_learnt: list[float]
    results: list[TaskResult | None]  # None for a task loaded from an earlier run
    counts: list[dict]
    loaded: list[bool] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def final_accuracy(self) -> list[float]:
        return self.accuracy_matrix[-1]

    @property
    def zero_forgetting(self) -> bool:
        return metrics.zero_forgetting(self.accuracy_matrix) and all(
            a == b for a, b in zip(self.accuracy_when_learnt, self.final_accuracy)
        )

    def record(self, method: str, seed: int) -> dict:
        """The benchmark run record (accuracy matrix, its metrics, sizes, timings)."""
        R = self.accuracy_matrix
        res = [r for r in self.results if r is not None]
        return dict(
            method=method,
            seed=seed,
            tasks=self.tasks,
            accuracy_matrix=R,
            final_accuracy=R[-1],
            average_accuracy=metrics.average_accuracy(R),
            backward_transfer=metrics.backward_transfer(R),
            zero_forgetting=metrics.zero_forgetting(R),
            trainable_per_task=self.counts[0]["trainable_per_task"],
            head_per_task=[c["head_per_task"] for c in self.counts],
            bytes_per_task=[c["bytes_per_task"] for c in self.counts],
            backbone_bytes=self.counts[0]["backbone_bytes"],
            best_epochs=[r.best_epoch for r in res],
            val_accuracy=[r.val_accuracy for r in res],
            # per task, per epoch: the validation curve (convergence) and the training loss
            val_curves=[[h["val_accuracy"] for h in r.history] for r in res],
            loss_curves=[[h["loss"] for h in r.history] for r in res],
            task_wall_s=[r.wall_s for r in res],
            wall_s=self.wall_s,
        )


def learn_sequence(
    model: TaskModel,
    tasks: list[Task],
    cfg: AdaptConfig = AdaptConfig(),
    *,
    seed: int = 0,
    out: str | Path | None = None,
    sizes: SplitSizes | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SequenceResult:
    """Learn ``tasks`` in order (task ``i`` with seed ``seed + i``); after each, test every task learnt
    so far. With ``out``, save each task as it is learnt and resume from the saved ones."""
    start = time.perf_counter()
    place(model, cfg.device)  # a task loaded from disk is evaluated where the learnt ones are
    R: list[list[float]] = []
    when_learnt: list[float] = []
    results: list[TaskResult | None] = []
    loaded: list[bool] = []
    for i, task in enumerate(tasks):
        tdir = Path(out) / "tasks" / task.name if out is not None else None
        # only a saved task needs its inputs' identity (hashing the data costs on every bench run otherwise)
        inputs = task_inputs(model, task, cfg, seed + i, sizes) if tdir is not None else None
        if tdir is not None and _committed(tdir, inputs):
            load_task(model, tdir)
            when_learnt.append(read_task_meta(tdir)["metrics"]["test_accuracy"])
            results.append(None)
            loaded.append(True)
            if log:
                log(f"{task.name}: already learnt, loaded from {tdir}")
        else:
            res = learn_task(model, task, cfg, seed=seed + i, progress=progress)
            test = accuracy(model, task.name, task.test, cfg.eval_batch_size, cfg.precision)
            when_learnt.append(test)
            results.append(res)
            loaded.append(False)
            if tdir is not None:
                save_task(
                    model,
                    task.name,
                    tdir,
                    inputs=inputs,
                    metrics=dict(
                        test_accuracy=test,
                        val_accuracy=res.val_accuracy,
                        best_epoch=res.best_epoch,
                        wall_s=res.wall_s,
                        data=dict(spec=task.spec, sizes=asdict(sizes or SplitSizes(None, None, None)), data_seed=0),
                        adapt=cfg.to_dict(),
                    ),
                )
            if log:
                log(
                    f"{task.name}: test {test:.2f}% (val {res.val_accuracy:.2f}%, epoch {res.best_epoch}, "
                    f"{res.wall_s:.0f} s)"
                )
        R.append([accuracy(model, t.name, t.test, cfg.eval_batch_size, cfg.precision) for t in tasks[: i + 1]])
    counts = [model.counts(t.name) for t in tasks]
    return SequenceResult([t.name for t in tasks], R, when_learnt, results, counts, loaded, time.perf_counter() - start)


def task_inputs(model: TaskModel, task: Task, cfg: AdaptConfig, seed: int, sizes: SplitSizes | None) -> dict:
    """Everything a learnt task depends on (not where it ran: ``device``)."""
    adapt = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    return dict(
        base_hash=model.base_hash,
        method=model.method.to_dict(),
        bn=model.bn,
        seed=seed,
        data=dict(spec=task.spec, sizes=asdict(sizes) if sizes else None, sha256=task.fingerprint()),
        adapt=adapt,
    )


def _committed(tdir: Path, inputs: dict) -> bool:
    """Whether ``tdir`` holds this task, learnt from ``inputs`` (other inputs: refused) and whole."""
    if not (tdir / "task.json").is_file():
        return False
    meta = read_task_meta(tdir)
    if "inputs" in meta:
        refuse_changed(tdir, meta["inputs"], inputs, "use another --out, or the same options to resume")
    elif meta["base_hash"] != inputs["base_hash"]:
        raise WeightlabError(f"{tdir}: was learnt on another base; use another --out")
    return file_matches(tdir / "task.safetensors", meta.get("tensors") or {"bytes": meta.get("file_bytes")})


__all__ = ["SequenceResult", "learn_sequence", "task_inputs"]


def run_sequence(
    base, method: str, tasks, cfg: AdaptConfig, *, seed: int, bn: str = "task", progress: bool = True
) -> tuple[dict, TaskModel]:
    """Learn ``tasks`` in order with one method; returns the run record and the model."""
    spec = parse_method(method)
    start = time.perf_counter()
    tm = TaskModel.from_base(base, spec, bn=bn, seed=seed)
    record = learn_sequence(tm, tasks, cfg, seed=seed, progress=progress).record(spec.name, seed)
    record["wall_s"] = time.perf_counter() - start
    record["base_hash"] = tm.base_hash  # the base it started from: every seed of a row must share it
    return record, tm
