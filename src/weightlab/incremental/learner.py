"""Learning one task: train the method's task tensors and a new head, select the epoch on validation.

Defaults are the authors' adaptation recipe (reference notes): AdamW lr 2e-3, weight decay 1e-6,
StepLR(33, x0.1), 100 epochs, batch 64 (CNNs) / 128 (ViT), gradient clipping 1.0, cross-entropy.
Unlike the authors (who keep the best *test* epoch), the kept epoch is the best on validation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from weightlab.data import ImageArrays
from weightlab.data.arrays import ModelInput
from weightlab.data.tasks import Task
from weightlab.engine import (
    OPTIMIZERS,
    PRECISIONS,
    Precision,
    evaluate_accuracy,
    make_optimizer,
    module_device,
    place,
    train_epoch,
)
from weightlab.errors import WeightlabError
from weightlab.incremental.model import TaskModel
from weightlab.models import get_family


@dataclass
class AdaptConfig:
    epochs: int = 100
    lr: float = 2e-3
    coef_lr: float | None = None  # RECAST coefficients' learning rate (None: ``lr``)
    weight_decay: float = 1e-6
    lr_step: int | None = 33  # None: a third of the epochs (33 of the authors' 100)
    lr_gamma: float = 0.1
    batch_size: int | None = None  # None: 128 for ViTs, 64 otherwise
    clip_norm: float | None = 1.0
    optimizer: str = "adamw"  # adamw | adam | sgd
    select: str = "val"  # val: keep the best validation epoch; last: keep the last
    eval_batch_size: int = 256
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    compile: bool = False  # train through torch.compile(model) (opt-in: the first epoch pays the compilation)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise WeightlabError(f"unknown precision '{self.precision}' (use one of {', '.join(PRECISIONS)})")
        if self.lr <= 0 or (self.coef_lr is not None and self.coef_lr <= 0):
            raise WeightlabError(f"learning rates must be > 0 (lr={self.lr}, coef_lr={self.coef_lr})")
        if self.epochs < 1:
            raise WeightlabError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise WeightlabError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            raise WeightlabError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.lr_step is not None and self.lr_step < 1:
            raise WeightlabError(f"lr_step must be >= 1 epochs (None: a third of the epochs), got {self.lr_step}")
        if self.weight_decay < 0 or self.lr_gamma <= 0:
            raise WeightlabError(f"weight_decay must be >= 0 and lr_gamma > 0 ({self.weight_decay}, {self.lr_gamma})")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise WeightlabError(f"clip_norm must be > 0 (None: no clipping), got {self.clip_norm}")
        if self.optimizer not in OPTIMIZERS:
            raise WeightlabError(f"unknown optimizer '{self.optimizer}' (use one of {', '.join(OPTIMIZERS)})")
        if self.select not in ("val", "last"):
            raise WeightlabError(f"unknown selection '{self.select}' (val or last)")

    def batch_for(self, model_cfg) -> int:
        """The batch size: ``batch_size``, else the model family's (see ``weightlab.models.families``)."""
        return self.batch_size or get_family(model_cfg).batch_size

    def step_size(self) -> int:
        return self.lr_step if self.lr_step is not None else max(1, round(self.epochs / 3))

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["compile"]:  # recorded only when on: the records of earlier runs stay what they were
            d.pop("compile")
        return d


@dataclass
class TaskResult:
    task: str
    best_epoch: int
    val_accuracy: float
    history: list[dict] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(
    model: TaskModel, task: str, data: ImageArrays, batch_size: int = 256, precision: str | Precision = "fp32"
) -> float:
    """Top-1 (percent) of ``task``'s head on ``data`` (switches the model to ``task``), on the model's
    device."""
    if model.current != task:  # while learning a task its live (uncommitted) tensors are evaluated
        model.set_task(task)
    batches = data.batches(batch_size, ModelInput.from_cfg(model.model_cfg), device=module_device(model))
    return evaluate_accuracy(model, batches, precision=precision)


def _optimizer(model: TaskModel, cfg: AdaptConfig) -> torch.optim.Optimizer:
    named = model.trainable_parameters()
    head = list(model.heads[model.current].parameters())
    groups = model.adapter.param_groups(named, head, cfg.lr) if model.adapter else None
    if groups is None and cfg.coef_lr is not None:
        coefs = [p for n, p in named.items() if n.endswith(".coefficients")]
        rest = [p for n, p in named.items() if not n.endswith(".coefficients")]
        groups = [g for g in (dict(params=rest + head), dict(params=coefs, lr=cfg.coef_lr)) if g["params"]]
    if groups is None:
        groups = [dict(params=list(named.values()) + head)]
    kind = (model.adapter.optimizer() if model.adapter else None) or cfg.optimizer
    # plain Adam (the adapters that force it: Piggyback) runs without weight decay, as in the authors' code
    return make_optimizer(kind, groups, lr=cfg.lr, weight_decay=0.0 if kind == "adam" else cfg.weight_decay)


def learn_task(
    model: TaskModel, task: Task, cfg: AdaptConfig = AdaptConfig(), *, seed: int = 0, progress: bool = True
) -> TaskResult:
    """Learn ``task``: a new head plus the method's task tensors, every shared tensor frozen. The model
    moves to ``cfg.device`` and stays there."""
    start = time.perf_counter()
    dev = place(model, cfg.device)
    prec = Precision(cfg.precision, dev)
    transform = ModelInput.from_cfg(model.model_cfg)
    bs = cfg.batch_for(model.model_cfg)
    model.new_task(task.name, task.classes, seed=seed)
    torch.manual_seed(seed)
    if model.adapter is not None:
        keep = {k: v.clone() for k, v in model.backbone.named_buffers()}
        model.adapter.before_task(model, task.train.batches(bs, transform, shuffle=True, seed=seed, device=dev))
        with torch.no_grad():  # a probe must not move BatchNorm statistics
            for k, v in model.backbone.named_buffers():
                if not k.rsplit(".", 1)[-1].startswith("task_"):
                    v.copy_(keep[k])
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size(), gamma=cfg.lr_gamma)
    params = [p for g in opt.param_groups for p in g["params"]]
    # the compiled module shares the model's tensors: what it trains is what is committed and evaluated
    trained = torch.compile(model) if cfg.compile else model
    best = (-1.0, -1, None)
    history = []
    bar = tqdm(range(cfg.epochs), desc=f"{model.method.name} {task.name}", disable=not progress, leave=False)
    for epoch in bar:
        loss = train_epoch(
            trained,
            task.train.batches(bs, transform, shuffle=True, seed=seed * 1000 + epoch, device=dev),
            opt,
            clip_params=params,
            clip_norm=cfg.clip_norm,
            precision=prec,
            desc=f"{model.method.name} on {task.name}, epoch {epoch}",
            total=-(-len(task.train) // bs),  # batches: a bar inside the epoch, with its rate and time left
            progress=progress,
        )
        sched.step()
        val = accuracy(model, task.name, task.val, cfg.eval_batch_size, prec) if cfg.select == "val" else float("nan")
        history.append(dict(epoch=epoch, loss=loss, val_accuracy=val))
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{val:.1f}")
        if cfg.select == "last" or val > best[0]:
            model.commit_task(task.name)
            best = (val, epoch, {k: v.detach().clone() for k, v in model.heads[task.name].state_dict().items()})
    model.heads[task.name].load_state_dict(best[2])
    model.set_task(task.name)
    return TaskResult(task.name, best[1], best[0], history, time.perf_counter() - start)
