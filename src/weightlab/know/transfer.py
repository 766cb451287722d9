"""Transfer evaluation of (predicted) weights, the KNOW paper's protocol.

A new, seeded classification head replaces the old one. Phase 1 (warm-up): conv / linear weights
and biases frozen, BatchNorm and the head trained (Adam ``warmup_lr``). Phase 2: everything trained,
Adam from ``lr`` with cosine decay to zero. The figure reported is the test accuracy at the end
("at convergence"), as in the paper's tables. Defaults are the authors' (10 + 100 epochs, 1e-3 /
4e-4, batch 128); the benchmark suites shorten them to fit two CPU cores and say so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from weightlab.data import ImageArrays
from weightlab.engine import Precision, evaluate_accuracy, make_optimizer, place, train_epoch
from weightlab.errors import WeightlabError
from weightlab.know.kinds import param_kinds
from weightlab.models import ModelCfg, rebuild_model
from weightlab.tuning import at_edge, extend_grid

TRAINED_IN_WARMUP = ("norm", "head")


@dataclass
class TransferConfig:
    warmup_epochs: int = 10
    epochs: int = 100
    warmup_lr: float = 1e-3
    lr: float = 4e-4
    batch_size: int = 128
    weight_decay: float = 0.0
    seed: int = 0
    # fair comparisons: choose ``lr`` from this grid on a validation split (``val_fraction`` of the
    # downstream training data, seeded by ``seed``), then train on all of it and read the test split once
    lr_grid: tuple[float, ...] | None = None
    val_fraction: float = 0.2
    # how many times the grid is extended past the edge its best rate sits on (the grid's step each time,
    # :mod:`weightlab.tuning`); a choice still at an edge is flagged (``lr_selection.at_edge``). 0: the grid
    # as given (the suites measured before issue 36)
    lr_extensions: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.warmup_epochs < 0 or self.epochs + self.warmup_epochs < 1 or self.batch_size < 1:
            raise WeightlabError(
                "transfer needs epochs, warmup_epochs >= 0 (at least one epoch in all) and batch_size >= 1 "
                f"(got {self.epochs}, {self.warmup_epochs}, {self.batch_size})"
            )
        if self.lr <= 0 or self.warmup_lr <= 0 or self.weight_decay < 0:
            raise WeightlabError(
                f"transfer needs lr, warmup_lr > 0 and weight_decay >= 0 (got {self.lr}, "
                f"{self.warmup_lr}, {self.weight_decay})"
            )
        if self.lr_grid is not None:
            self.lr_grid = tuple(float(v) for v in self.lr_grid)
            if not self.lr_grid or any(v <= 0 for v in self.lr_grid):
                raise WeightlabError(f"the learning-rate grid must hold positive rates, got {self.lr_grid}")
        if not 0.0 < self.val_fraction < 1.0:
            raise WeightlabError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr_extensions < 0:
            raise WeightlabError(f"lr_extensions must be >= 0, got {self.lr_extensions}")


def validation_split(train: ImageArrays, fraction: float, seed: int) -> tuple[ImageArrays, ImageArrays]:
    """(fit, validation): a seeded random ``fraction`` of ``train`` held out for model selection."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(fraction * len(train)))
    if n_val >= len(train):
        raise WeightlabError(f"{len(train)} training samples are too few to hold out a validation split")
    return train.subset(order[n_val:].sort().values), train.subset(order[:n_val].sort().values)


def select_lr(
    state: dict[str, torch.Tensor],
    model_cfg: ModelCfg | dict,
    train: ImageArrays,
    cfg: TransferConfig,
    *,
    num_classes: int | None = None,
    device: str | None = None,
    precision: str = "fp32",
    val: ImageArrays | None = None,
) -> tuple[float, dict[float, float]]:
    """The learning rate with the best validation accuracy (the first of equals in grid order), and every
    tried rate's validation accuracy. The grid is ``cfg.lr_grid``, extended past the edge its best rate sits
    on up to ``cfg.lr_extensions`` times (:func:`weightlab.tuning.extend_grid`). Only ``train`` (and ``val``)
    is read: without ``val``, ``train`` is split into fit and validation; with it (held-out images of the
    downstream training split), each candidate trains on all of ``train``."""
    fit, val = (train, val) if val is not None else validation_split(train, cfg.val_fraction, cfg.seed)
    grid, scores = list(cfg.lr_grid), {}
    while True:
        for lr in grid:
            if lr not in scores:
                res = transfer(
                    state,
                    model_cfg,
                    fit,
                    val,
                    replace(cfg, lr=lr, lr_grid=None),
                    num_classes=num_classes or len(train.classes),
                    progress=False,
                    device=device,
                    precision=precision,
                )
                scores[lr] = res["accuracy"]
        best = max(grid, key=lambda lr: (scores[lr], -grid.index(lr)))
        nxt = extend_grid(grid, best)
        if nxt is None or len(grid) - len(cfg.lr_grid) >= cfg.lr_extensions or nxt in scores:
            return best, scores
        grid.append(nxt)


def build_transfer_model(
    state: dict[str, torch.Tensor], model_cfg: ModelCfg | dict, num_classes: int, seed: int
) -> nn.Module:
    """The model of ``model_cfg`` with ``state`` loaded and a fresh head for ``num_classes``."""
    torch.manual_seed(seed)
    model = rebuild_model(ModelCfg.from_dict(model_cfg).replace(num_classes=num_classes))
    kinds = param_kinds(model)
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and kinds.get(k) != "head"}
    bad = [k for k, v in keep.items() if tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in keep and kinds.get(k) != "head" and not k.endswith("num_batches_tracked")]
    if bad or missing:
        raise WeightlabError(
            "the weights do not fit the model: "
            + "; ".join(
                p
                for p in (
                    f"shape mismatch for {', '.join(bad[:3])}" if bad else "",
                    f"missing {', '.join(missing[:3])}" if missing else "",
                )
                if p
            )
        )
    model.load_state_dict(keep, strict=False)
    return model


def transfer(
    state: dict[str, torch.Tensor],
    model_cfg: ModelCfg | dict,
    train: ImageArrays,
    test: ImageArrays,
    cfg: TransferConfig | None = None,
    *,
    num_classes: int | None = None,
    progress: bool = True,
    desc: str = "transfer",
    device: str | None = None,
    precision: str = "fp32",
    val: ImageArrays | None = None,
) -> dict:
    """Fine-tune ``state`` on ``train`` with the two-phase protocol on ``device`` (default CPU) in
    ``precision``; returns the test accuracy and a log. With ``cfg.lr_grid`` the learning rate is first
    chosen on validation (``val``, else a split of ``train``: :func:`select_lr`), and ``test`` is read once,
    at the end."""
    cfg = cfg or TransferConfig()
    num_classes = num_classes or len(train.classes)
    start = time.perf_counter()
    selection = None
    if cfg.lr_grid is not None:
        best, scores = select_lr(
            state, model_cfg, train, cfg, num_classes=num_classes, device=device, precision=precision, val=val
        )
        selection = {
            "grid": list(cfg.lr_grid) + [r for r in scores if r not in cfg.lr_grid],
            "val_accuracy": {str(k): v for k, v in scores.items()},
            "lr": best,
            "at_edge": at_edge(list(scores), best),  # still at an edge after the extensions: flagged
        }
        cfg = replace(cfg, lr=best)
    model = build_transfer_model(state, model_cfg, num_classes, cfg.seed)
    dev = place(model, device or "cpu")
    prec = Precision(precision, dev)
    kinds = param_kinds(model)
    named = dict(model.named_parameters())
    mcfg = model.weightlab_cfg
    n_batches = (len(train) + cfg.batch_size - 1) // cfg.batch_size
    log = {"warmup_loss": [], "loss": []}
    bar = tqdm(total=cfg.warmup_epochs + cfg.epochs, desc=desc, disable=not progress, leave=False)
    if cfg.warmup_epochs > 0:
        warm = [p for k, p in named.items() if kinds.get(k) in TRAINED_IN_WARMUP]
        for k, p in named.items():
            p.requires_grad_(kinds.get(k) in TRAINED_IN_WARMUP)
        opt = make_optimizer("adam", warm, lr=cfg.warmup_lr, weight_decay=cfg.weight_decay)
        for e in range(cfg.warmup_epochs):
            batches = train.batches(cfg.batch_size, mcfg, shuffle=True, seed=cfg.seed * 1000 + e, device=dev)
            log["warmup_loss"].append(train_epoch(model, batches, opt, total=n_batches, precision=prec, desc=desc))
            bar.update()
        for p in named.values():
            p.requires_grad_(True)
    log["warmup_accuracy"] = (  # not read when the rate is being selected: the test split is read once
        evaluate_accuracy(model, test.batches(256, mcfg, device=dev), precision=prec)
        if cfg.warmup_epochs and selection is None
        else None
    )
    if cfg.epochs > 0:
        opt = make_optimizer("adam", model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * n_batches)
        for e in range(cfg.epochs):
            batches = train.batches(cfg.batch_size, mcfg, shuffle=True, seed=cfg.seed * 1000 + 500 + e, device=dev)
            log["loss"].append(
                train_epoch(model, batches, opt, scheduler=sched, total=n_batches, precision=prec, desc=desc)
            )
            bar.update()
    bar.close()
    acc = evaluate_accuracy(model, test.batches(256, mcfg, device=dev), precision=prec)
    out = {"accuracy": acc, "seconds": time.perf_counter() - start, "config": asdict(cfg), **log}
    if selection is not None:
        out["lr_selection"] = selection
    return out


def transfer_run(
    row: tuple[str, str, int, Path],
    seed: int,
    model_cfg,
    train: ImageArrays,
    test: ImageArrays,
    cfg: TransferConfig,
    device: str | None = None,
    precision: str = "fp32",
    progress: bool = False,
    val: ImageArrays | None = None,
    lr: float | None = None,
) -> dict:
    """One transfer run of a table row with one seed: its record. With ``lr`` the run uses that rate (chosen
    before, on another seed) instead of selecting one. The job every backend runs (see
    :mod:`weightlab.parallel`); it depends on its arguments only."""
    from weightlab.io import load_weights

    row_id, label, step, path = row
    run_cfg = replace(cfg, seed=seed) if lr is None else replace(cfg, seed=seed, lr=lr, lr_grid=None)
    res = transfer(
        load_weights(path),
        model_cfg,
        train,
        test,
        run_cfg,
        progress=progress,
        desc=f"{row_id} seed {seed}",
        device=device,
        precision=precision,
        val=val,
    )
    return {
        "row": row_id,
        "label": label,
        "step": step,
        "seed": seed,
        "accuracy": res["accuracy"],
        "warmup_accuracy": res["warmup_accuracy"],
        "seconds": round(res["seconds"], 2),
        **({"lr_selection": res["lr_selection"]} if "lr_selection" in res else {}),
        **({"lr": lr} if lr is not None else {}),
    }


def run_transfers(
    rows: list[tuple[str, str, int, Path]],
    model_cfg: ModelCfg | dict,
    train: ImageArrays,
    test: ImageArrays,
    cfg: TransferConfig,
    seeds,
    *,
    done: set | None = None,
    progress: bool = True,
    per_run_progress: bool = False,
    device: str | None = None,
    precision: str = "fp32",
    backend=None,
    val: ImageArrays | None = None,
    rates: dict[str, float] | None = None,
) -> Iterator[dict]:
    """Transfer every ``(row id, label, step, weights file)`` with every seed (rows outer, seeds inner),
    skipping the ``(row id, seed)`` pairs in ``done``; yields one record per finished run (in the order
    runs finish: spread over ``backend``, a :class:`weightlab.parallel.Backend`, default serial), so a
    caller can store it at once and resume later. ``val``: the validation images rates are chosen on;
    ``rates``: a row id's rate chosen before (its runs then select none)."""
    from weightlab.parallel import Backend, run_jobs

    done = done or set()
    backend = (backend or Backend()).resolved()
    show = per_run_progress and backend.kind == "serial"
    rates = rates or {}
    jobs = [
        (row, seed, model_cfg, train, test, cfg, device, precision, show, val, rates.get(row[0]))
        for row in rows
        for seed in seeds
        if (row[0], seed) not in done
    ]
    bar = tqdm(total=len(jobs), desc="transfer runs", disable=not progress)
    for _, record in run_jobs(transfer_run, jobs, backend):
        bar.update()
        yield record
    bar.close()
