"""Pretraining Θ⁰ to convergence, the KNOW paper's protocol (Sec. 5.2: "trained … for 200 epochs using the
Adam optimizer with cosine decay and data augmentation"), resumable.

A trajectory only tests KNOW's hypothesis if its base has converged on D⁰: fine-tuning a base that is
still learning on subsets of D⁰ keeps improving it (retrodiction then means "rewind training"), while
fine-tuning a converged one on ever smaller subsets makes it forget. :func:`pretrain` trains with a
decaying rate (cosine to zero over ``epochs``) and train-time augmentation, records the validation
accuracy after every epoch and states whether the curve has flattened (the trend over its last
``flat_window`` epochs within ``flat_tolerance`` points, see :func:`converged`).

With ``curriculum`` S > 1 the same run is the faithful *incremental pretraining* baseline (the paper's
Table 1: "progressive training from 6.25% to 100% of the data"): the epochs are split evenly over the
nested subsets ``D^{S-1}, …, D¹, D⁰`` of the forgetting protocol (smallest first), and every epoch is
``|D⁰|`` samples drawn by cycling its subset, so the run has exactly the base's optimiser steps, rate
schedule and augmentation; only the data it sees grows.

``out_dir`` holds ``pretrain.json`` (config, model, history), ``checkpoint.safetensors`` (weights,
optimiser state and the epoch counter, one file written atomically after every epoch) and, at the end,
``base.safetensors``. A killed run resumes at the next epoch and reproduces the uninterrupted run exactly
on CPU; a finished one is loaded, not retrained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from weightlab.data.augment import check_augment
from weightlab.engine import (
    OPTIMIZERS,
    Precision,
    evaluate_accuracy,
    load_optimizer_tensors,
    make_optimizer,
    module_device,
    optimizer_tensors,
    place,
    train_epoch,
)
from weightlab.errors import WeightlabError
from weightlab.io import (
    check_resume,
    check_writable,
    load_weights,
    read_json,
    save_tensors,
    write_json,
)
from weightlab.models import load_state_dict_strict
from weightlab.models import model_cfg as get_model_cfg

MANIFEST = "pretrain.json"
CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "base.safetensors"
SCHEDULES = ("cosine", "constant")


@dataclass
class PretrainConfig:
    """Defaults: Adam 3e-3 with cosine decay to zero, batch 128, no augmentation (set ``augment`` to
    ``crop`` for digits, ``crop_flip`` for natural images)."""

    epochs: int = 30
    lr: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    batch_size: int = 128
    augment: str | None = None
    seed: int = 0
    flat_window: int = 5
    flat_tolerance: float = 1.0
    # incremental pretraining: epochs split over this many nested subsets of ratio ``curriculum_ratio``
    # (smallest first, drawn with ``curriculum_seed``); 0 or 1: plain pretraining on all of D⁰
    curriculum: int = 0
    curriculum_ratio: float = 0.5
    curriculum_seed: int = 0

    def to_dict(self) -> dict:
        """As stored in manifests (the curriculum only when set, so bases made before it resume)."""
        d = asdict(self)
        if self.curriculum <= 1:
            for k in ("curriculum", "curriculum_ratio", "curriculum_seed"):
                d.pop(k)
        return d

    def stage_of_epoch(self, epoch: int) -> int:
        """The nested subset (0 = all of D⁰) that ``epoch`` (0-based) trains on under the curriculum."""
        if self.curriculum <= 1:
            return 0
        return self.curriculum - 1 - min(self.curriculum - 1, epoch * self.curriculum // self.epochs)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise WeightlabError("pretraining needs epochs >= 1, batch size >= 1 and lr > 0")
        if self.optimizer not in OPTIMIZERS:
            raise WeightlabError(f"unknown optimizer '{self.optimizer}' (use one of {', '.join(OPTIMIZERS)})")
        if self.schedule not in SCHEDULES:
            raise WeightlabError(f"unknown schedule '{self.schedule}' (use one of {', '.join(SCHEDULES)})")
        check_augment(self.augment)
        if self.flat_window < 2:
            raise WeightlabError(f"flat_window must be at least 2 epochs, got {self.flat_window}")
        if self.curriculum < 0 or self.curriculum > self.epochs:
            raise WeightlabError(
                f"the curriculum needs 0 to {self.epochs} (epochs) nested subsets, got {self.curriculum}"
            )
        if self.curriculum > 1 and not 0 < self.curriculum_ratio < 1:
            raise WeightlabError(f"the curriculum's subset ratio must be in (0, 1), got {self.curriculum_ratio}")


class _Schedule:
    """The learning rate per step: cosine from ``lr`` to zero over ``total`` steps (or constant);
    its whole state is the step counter, so a resumed run continues it exactly."""

    def __init__(self, opt: torch.optim.Optimizer, lr: float, total: int, kind: str, step: int = 0):
        self.opt, self.lr, self.total, self.kind, self.t = opt, lr, max(total, 1), kind, step
        self._apply()

    def _apply(self) -> None:
        frac = min(self.t, self.total) / self.total
        lr = self.lr if self.kind == "constant" else 0.5 * self.lr * (1 + math.cos(math.pi * frac))
        for group in self.opt.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.t += 1
        self._apply()


def converged(history: list[dict], window: int, tolerance: float) -> bool | None:
    """Whether the validation curve has flattened: the least-squares line through the last ``window``
    epochs' accuracies changes by at most ``tolerance`` points over them (a trend, so that the
    epoch-to-epoch noise of a small validation split does not count as learning). None without
    validation data or with fewer epochs than ``window``."""
    acc = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None]
    if len(acc) < window:
        return None
    y = torch.tensor(acc[-window:], dtype=torch.float64)
    x = torch.arange(window, dtype=torch.float64)
    x = x - x.mean()
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    return abs(slope) * (window - 1) <= tolerance


def pretrain(
    model: nn.Module,
    train,
    out_dir: str | Path,
    cfg: PretrainConfig | None = None,
    *,
    val=None,
    data_info: dict | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Train ``model`` (with ``weightlab_cfg``) on ``train`` into ``out_dir`` (resumably, see the module
    doc); ``val`` gives the validation curve. Returns the manifest; the model holds the trained weights
    (on ``device``, in eval mode). ``stop_after`` stops after that many epochs (to test resuming)."""
    cfg = cfg or PretrainConfig()
    cfg.validate()
    out_dir = Path(out_dir)
    model_cfg = get_model_cfg(model, "pretrain")
    config = cfg.to_dict()
    manifest_path = out_dir / MANIFEST
    data = data_info or {"size": len(train)}
    # the data the run reads: a rerun with other data is refused, never mixed in (the initialisation is
    # not an input: the checkpoint holds the weights from the first epoch on)
    inputs = dict(
        train_sha256=train.fingerprint(),
        val_sha256=val.fingerprint() if val is not None else None,
    )
    if manifest_path.is_file():
        meta = read_json(manifest_path)
        current = dict(model=model_cfg.to_dict(), config=config, data=data, inputs=inputs)
        check_resume(out_dir, meta, current, "use a new output folder, or the same options and data to resume")
        if meta.get("finished") and (out_dir / WEIGHTS).is_file():
            load_state_dict_strict(model, load_weights(out_dir / WEIGHTS), source=str(out_dir / WEIGHTS))
            place(model, device)
            model.eval()
            return meta
    else:
        check_writable(out_dir)
        meta = dict(
            model=model_cfg.to_dict(),
            data=data,
            inputs=inputs,
            config=config,
            epochs_done=0,
            history=[],
            finished=False,
        )
    dev = place(model, device)
    prec = Precision(precision, dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.optimizer, trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    n_batches = (len(train) + cfg.batch_size - 1) // cfg.batch_size
    done = 0
    if (out_dir / CHECKPOINT).is_file():
        ck = load_weights(out_dir / CHECKPOINT)
        done = int(ck.pop("epoch"))
        load_state_dict_strict(
            model, {k[6:]: v for k, v in ck.items() if k.startswith("model.")}, source=str(out_dir / CHECKPOINT)
        )
        load_optimizer_tensors(opt, {k[6:]: v for k, v in ck.items() if k.startswith("optim.")})
    meta["history"] = meta["history"][:done]  # the checkpoint is the truth if the manifest lags behind
    sched = _Schedule(opt, cfg.lr, cfg.epochs * n_batches, cfg.schedule, step=done * n_batches)
    data = train.with_options(augment=cfg.augment)
    stages, sizes = _curriculum(train, cfg) if cfg.curriculum > 1 else (None, None)
    last = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    bar = tqdm(total=cfg.epochs, initial=done, desc="pretraining", disable=not progress)
    for epoch in range(done, last):
        torch.manual_seed(cfg.seed * 1000 + epoch)
        seen = data if stages is None else data.subset(stages[cfg.stage_of_epoch(epoch)])
        loss = train_epoch(
            model,
            seen.batches(cfg.batch_size, model_cfg, shuffle=True, seed=cfg.seed * 1000 + epoch, device=dev),
            opt,
            scheduler=sched,
            total=n_batches,
            precision=prec,
            desc=f"epoch {epoch + 1}",
        )
        model.eval()
        record = {"epoch": epoch + 1, "train_loss": loss, "lr_end": opt.param_groups[0]["lr"]}
        if stages is not None:
            s = cfg.stage_of_epoch(epoch)
            record["subset"] = {"stage": s, "samples": sizes[s]}
        if val is not None:
            record["val_accuracy"] = evaluate_accuracy(
                model, val.batches(256, model_cfg, device=module_device(model)), precision=prec
            )
        state = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
        state.update({f"optim.{k}": v for k, v in optimizer_tensors(opt).items()})
        state["epoch"] = torch.tensor(epoch + 1)
        save_tensors(out_dir / CHECKPOINT, state)
        meta["history"].append(record)
        meta["epochs_done"] = epoch + 1
        meta["converged"] = converged(meta["history"], cfg.flat_window, cfg.flat_tolerance)
        write_json(manifest_path, meta)
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{record.get('val_accuracy', float('nan')):.1f}")
    bar.close()
    model.eval()
    if meta["epochs_done"] == cfg.epochs:
        save_tensors(out_dir / WEIGHTS, model.state_dict())
        meta["finished"] = True
        write_json(manifest_path, meta)
    return meta


def _curriculum(train, cfg: PretrainConfig) -> tuple[list[torch.Tensor], list[int]]:
    """Per nested subset ``D^s`` (as in progressive forgetting, ``D⁰`` first), ``|D⁰|`` indices that
    cycle through it (every epoch has the base's number of samples and optimiser steps), and its size."""
    from weightlab.know.forgetting import nested_subsets

    n = len(train)
    subsets = nested_subsets(train.labels, cfg.curriculum_ratio, cfg.curriculum, cfg.curriculum_seed)
    return [idx.repeat((n + len(idx) - 1) // len(idx))[:n] for idx in subsets], [len(idx) for idx in subsets]


__all__ = ["PretrainConfig", "pretrain", "converged", "MANIFEST", "CHECKPOINT", "WEIGHTS", "SCHEDULES"]
