"""What every continual-learning baseline shares: the task data as tensors, per-task accuracy, the
run record, and the training loop of the baselines implemented here (DER++, HAT, InfLoRA, L2P).

A baseline implemented here is a :class:`ContinualMethod`: one shared backbone (the pretrained model
without its classifier) and one linear head per task (task-incremental, multi-head). The loop
(:func:`run_own`) calls its hooks in order::

    for each task t:   begin_task(t, x, y)  ->  optimizer(t)
                       for each epoch, each shuffled batch:
                           loss(t, x, y, batch, n_batches) -> backward -> after_backward(t, ...)
                           -> clip -> step -> after_step(t)
                       end_task(t, x, y)
                       test every task learnt so far with logits(j, x)

and builds the same record as the per-task methods and the Avalanche baselines.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.data.arrays import ModelInput
from weightlab.engine import Precision, batch_to, correct_count, make_optimizer, place, tensor_batches, train_epoch
from weightlab.errors import WeightlabError
from weightlab.incremental import metrics
from weightlab.registry import registered_options


def task_tensors(data, transform: ModelInput, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """A task split (``ImageArrays``) as one normalised float batch and its labels."""
    xs, ys = zip(*data.batches(batch_size, transform))
    return torch.cat(xs), torch.cat(ys)


def batched_accuracy(
    logits_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, precision: Precision | str | None = None
) -> float:
    """Top-1 accuracy (%) of ``logits_fn(x_batch)`` on ``(x, y)`` (where the tensors are)."""
    correct, _ = correct_count(logits_fn, tensor_batches(x, y, batch_size), x.device, precision)
    return 100.0 * correct / max(len(y), 1)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def check_finite(module: nn.Module, name: str, task: str) -> None:
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        raise WeightlabError(f"{name} on {task}: the weights diverged (non-finite); lower the learning rate")


def prepare(base: nn.Module, tasks, seed: int, device=None):
    """A trainable copy of ``base`` without its classifier (after seeding) and every task's train, val
    and test splits as tensors on ``device``: ``(backbone, feature_dim, train, val, test)``."""
    from weightlab.incremental.model import detach_classifier

    transform = ModelInput.from_cfg(base.weightlab_cfg)
    torch.manual_seed(seed)
    backbone, dim = detach_classifier(copy.deepcopy(base))
    for p in backbone.parameters():
        p.requires_grad_(True)
    train, val, test = (
        [batch_to(task_tensors(getattr(t, split), transform), device) for t in tasks]
        for split in ("train", "val", "test")
    )
    return backbone, dim, train, val, test


def score_after_task(
    logits_fn, t: int, val, test, val_accuracy: list[float], R: list[list[float]], precision=None
) -> None:
    """After learning task ``t``: append its validation accuracy and the test accuracy of every task so
    far (a row of R). ``logits_fn(task, x)`` classifies ``x`` with the head of ``task``."""
    val_accuracy.append(batched_accuracy(lambda xb: logits_fn(t, xb), *val[t], precision=precision))
    R.append([batched_accuracy(lambda xb, j=j: logits_fn(j, xb), *test[j], precision=precision) for j in range(t + 1)])


def build_record(
    *,
    name: str,
    seed: int,
    tasks,
    R: list[list[float]],
    trainable_per_task: int,
    head_per_task: list[int],
    bytes_per_task: list[int],
    backbone_bytes: int,
    buffer_samples: int = 0,
    buffer_bytes: int = 0,
    shared_state_bytes: int = 0,
    options: dict,
    epochs: int,
    val_accuracy: list[float],
    task_wall_s: list[float],
    start: float,
) -> dict:
    """The run record of a baseline: the accuracy matrix, its metrics, sizes and timings.

    ``bytes_per_task``: what each task adds (its head and its own tensors); ``buffer_bytes``: a replay
    buffer; ``shared_state_bytes``: state kept for all tasks that is neither (HAT's cumulative mask,
    InfLoRA's subspace bases, an L2P prompt pool)."""
    return dict(
        method=name,
        seed=seed,
        tasks=[t.name for t in tasks],
        accuracy_matrix=R,
        final_accuracy=R[-1],
        average_accuracy=metrics.average_accuracy(R),
        backward_transfer=metrics.backward_transfer(R),
        forgetting=metrics.max_forgetting(R),
        zero_forgetting=metrics.zero_forgetting(R),
        trainable_per_task=trainable_per_task,
        head_per_task=head_per_task,
        bytes_per_task=bytes_per_task,
        backbone_bytes=backbone_bytes,
        buffer_samples=buffer_samples,
        buffer_bytes=buffer_bytes,
        shared_state_bytes=shared_state_bytes,
        options=options,
        best_epochs=[epochs - 1] * len(tasks),
        val_accuracy=val_accuracy,
        task_wall_s=task_wall_s,
        wall_s=time.perf_counter() - start,
    )


class ContinualMethod(nn.Module):
    """Base of the baselines implemented here: ``backbone`` (features) + one head per task.

    Subclasses override the hooks they need; the defaults train backbone and current head with
    cross-entropy and AdamW (the suite's lr and weight decay). Options (``options``, ``{key: value}``)
    are kept typed as ``self.opts``, an instance of the registered options dataclass."""

    clip_norm: float | None = None  # None: the suite's (AdaptConfig.clip_norm)
    needs_tokens = False  # True: runs on transformer families only (weightlab.models.families: tokens)

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        classes_per_task: list[int],
        options: dict,
        cfg,
        model_cfg: dict,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(feature_dim, n) for n in classes_per_task)
        self.opts = registered_options(type(self), dict(options))  # typed and checked, as every registered kind
        self.cfg, self.model_cfg = cfg, model_cfg
        self.feature_dim = feature_dim

    # -- hooks ----------------------------------------------------------------------------------
    def begin_task(self, t: int, x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def trainable(self, t: int) -> list[nn.Parameter]:
        return [*self.backbone.parameters(), *self.heads[t].parameters()]

    def optimizer(self, t: int) -> torch.optim.Optimizer:
        return make_optimizer("adamw", self.trainable(t), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def set_train_mode(self, t: int) -> None:
        self.train()

    def loss(self, t: int, x: torch.Tensor, y: torch.Tensor, batch: int, n_batches: int) -> torch.Tensor:
        return F.cross_entropy(self.logits(t, x), y)

    def after_backward(self, t: int, batch: int, n_batches: int) -> None:
        pass

    def after_step(self, t: int) -> None:
        pass

    def end_task(self, t: int, x: torch.Tensor, y: torch.Tensor) -> None:
        pass

    def logits(self, t: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[t](self.backbone(x))

    # -- sizes ----------------------------------------------------------------------------------
    def learnt_per_task(self) -> int:
        """Numbers trained per task besides the head (default: the whole backbone)."""
        return sum(p.numel() for p in self.backbone.parameters())

    def task_bytes(self, t: int) -> int:
        """Bytes task ``t`` adds besides its head (default: none)."""
        return 0

    def buffer(self) -> tuple[int, int]:
        """(samples, bytes) of a replay buffer (default: none)."""
        return 0, 0

    def shared_state_bytes(self) -> int:
        return 0

    def backbone_bytes(self) -> int:
        return tensor_bytes(self.backbone.state_dict().values())


def fit_task(
    method: ContinualMethod,
    t: int,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch: int,
    gen: torch.Generator,
    precision: Precision | None = None,
) -> None:
    """Learn task ``t`` on ``(x, y)``: ``begin_task``, ``epochs`` passes of shuffled batches, ``end_task``.
    The shuffling ``gen`` is a CPU generator, so the order is the same on every device."""
    method.begin_task(t, x, y)
    params = [p for p in method.trainable(t) if p.requires_grad]
    opt = method.optimizer(t)
    clip = method.clip_norm if method.clip_norm is not None else method.cfg.clip_norm
    n_batches = math.ceil(len(y) / batch)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        train_epoch(
            method,
            tensor_batches(x, y, batch, order),
            opt,
            clip_params=params,
            clip_norm=clip,
            loss_fn=lambda b, xb, yb: method.loss(t, xb, yb, b, n_batches),
            after_backward=lambda b: method.after_backward(t, b, n_batches),
            after_step=lambda: method.after_step(t),
            train_mode=lambda: method.set_train_mode(t),
            check_finite=False,
            precision=precision,
        )  # the weights are checked after each task
    method.end_task(t, x, y)


def run_own(
    method_cls: type[ContinualMethod], base: nn.Module, spec, tasks, cfg, *, seed: int, progress: bool = True
) -> dict:
    """Learn ``tasks`` in order with a baseline implemented here; returns the run record."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    model_cfg = base.weightlab_cfg
    backbone, dim, train, val, test = prepare(base, tasks, seed, cfg.device)
    method = method_cls(backbone, dim, [t.num_classes for t in tasks], spec.options, cfg, model_cfg, seed=seed)
    prec = Precision(cfg.precision, place(method, cfg.device))
    batch = cfg.batch_for(model_cfg)
    gen = torch.Generator().manual_seed(seed)
    R: list[list[float]] = []
    val_acc, task_wall = [], []
    for t, task in enumerate(tqdm(tasks, desc=spec.name, disable=not progress, leave=False)):
        t0 = time.perf_counter()
        fit_task(method, t, *train[t], epochs=cfg.epochs, batch=batch, gen=gen, precision=prec)
        task_wall.append(time.perf_counter() - t0)
        check_finite(method, spec.name, task.name)
        method.eval()
        score_after_task(method.logits, t, val, test, val_acc, R, prec)
    n_buffer, buffer_bytes = method.buffer()
    return build_record(
        name=spec.name,
        seed=seed,
        tasks=tasks,
        R=R,
        trainable_per_task=method.learnt_per_task(),
        head_per_task=[sum(p.numel() for p in h.parameters()) for h in method.heads],
        bytes_per_task=[tensor_bytes(h.parameters()) + method.task_bytes(t) for t, h in enumerate(method.heads)],
        backbone_bytes=method.backbone_bytes(),
        buffer_samples=n_buffer,
        buffer_bytes=buffer_bytes,
        shared_state_bytes=method.shared_state_bytes(),
        options=spec.options,
        epochs=cfg.epochs,
        val_accuracy=val_acc,
        task_wall_s=task_wall,
        start=start,
    )
