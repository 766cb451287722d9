"""Epochs, evaluation, optimisers, clipping and devices (see :mod:`weightlab.engine`)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightlab.engine.options import DEVICE_HELP, OPTIMIZERS, PRECISIONS  # noqa: F401  (re-exported)
from weightlab.errors import WeightlabError

Batch = tuple[torch.Tensor, torch.Tensor]

#: on an accelerator, :func:`train_epoch` reads the loss (and checks it is finite) every this many steps
SYNC_EVERY = 32


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"cpu"``: the CPU; ``"auto"``: CUDA, then MPS, then CPU; else as torch reads it."""
    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise WeightlabError(f"unknown device '{device}' (use cpu, cuda, cuda:N, mps or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeightlabError(f"device '{device}' asked for, but this machine has no CUDA GPU")
    return dev


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for a module without tensors)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def place(module: nn.Module, device: str | torch.device | None) -> torch.device:
    """Move ``module`` (in place) to ``device`` (``None``: leave it where it is); returns the device.
    The one place in the library where a model changes device."""
    if device is None:
        return module_device(module)
    dev = resolve_device(device)
    if module_device(module) != dev:
        module.to(dev)
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derived_seed(*parts) -> int:
    """A 63-bit seed that depends on ``parts`` only (their text), the same in every process and run order."""
    import hashlib

    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def set_deterministic(on: bool = True) -> None:
    """Deterministic kernels where PyTorch has them (CUDA: cuBLAS workspace, cuDNN without autotuning);
    operations without a deterministic implementation warn instead of failing."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


class Precision:
    """Mixed precision for one training run: ``fp32`` (off), ``bf16`` (autocast) or ``fp16`` (autocast
    and a gradient scaler, kept across epochs). ``device`` decides the autocast device type."""

    def __init__(self, kind: str = "fp32", device: str | torch.device | None = None):
        if isinstance(kind, Precision):
            kind = kind.kind
        if kind not in PRECISIONS:
            raise WeightlabError(f"unknown precision '{kind}' (use one of {', '.join(PRECISIONS)})")
        self.kind = kind
        self.device = resolve_device(device)
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[kind]
        self.scaler = torch.amp.GradScaler(self.device.type) if kind == "fp16" else None

    @classmethod
    def of(cls, precision: Precision | str | None, device: str | torch.device | None) -> Precision:
        """``precision`` itself when it already is one, else a new one for ``device``."""
        if isinstance(precision, Precision):
            return precision
        return cls(precision or "fp32", device)

    def autocast(self):
        """The context a forward pass (and its loss) runs in."""
        if self.kind == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, opt: torch.optim.Optimizer) -> None:
        """Gradients back to their true scale (before hooks and clipping read them)."""
        if self.scaler is not None:
            self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer) -> None:
        """The optimiser step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.scaler is None:
            opt.step()
        else:
            self.scaler.step(opt)
            self.scaler.update()


def batch_to(batch: Batch, device: torch.device | str | None) -> Batch:
    """One ``(x, y)`` pair on ``device`` (e.g. a whole small split kept there); ``None``: left where it is."""
    if device is None:
        return batch
    dev = resolve_device(device)
    x, y = batch
    if x.device != dev:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    return x, y


def to_device(batches: Iterable[Batch], device: torch.device | str | None) -> Iterator[Batch]:
    """The batches on ``device`` (``None``: left where they are)."""
    dev = resolve_device(device) if device is not None else None
    for batch in batches:
        yield batch_to(batch, dev)


def make_optimizer(
    kind: str, params, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """``adam`` / ``adamw`` / ``sgd`` (with ``momentum``) over ``params`` (tensors or groups)."""
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise WeightlabError(f"unknown optimizer '{kind}' (use one of {', '.join(OPTIMIZERS)})")


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as flat tensors ``{"<param index>.<name>": tensor}`` (safetensors
    has no pickles; :func:`load_optimizer_tensors` puts it back into an optimiser over the same parameters)."""
    out = {}
    params = [p for group in opt.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        for name, value in opt.state.get(p, {}).items():
            out[f"{i}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    params = [p for group in opt.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if key == "empty":
            continue
        i, name = key.split(".", 1)
        p = params[int(i)]
        # moments live beside their parameter (whatever device it is on); step counters stay as read
        opt.state[p][name] = torch.empty_like(p).copy_(value) if value.shape == p.shape else value.clone()


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    opt: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    clip_params: list[torch.Tensor] | None = None,
    clip_norm: float | None = None,
    scheduler=None,
    after_backward: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    train_mode: Callable[[], None] | None = None,
    check_finite: bool = True,
    device: str | torch.device | None = None,
    precision: Precision | str | None = None,
    desc: str = "training",
    total: int | None = None,
    progress: bool = False,
) -> float:
    """One pass over ``batches``: per batch forward, loss, backward, ``after_backward``, gradient-norm
    clip, optimiser step, ``after_step`` and a per-step ``scheduler``. Returns the mean loss.

    ``loss_fn(batch_index, x, y)`` defaults to the cross-entropy of ``model(x)``; ``train_mode``
    defaults to ``model.train()``. Batches go to ``device`` (default: where the model is); the forward
    pass runs in ``precision`` (pass one :class:`Precision` for every epoch of a run so that the fp16
    gradient scale carries over). A non-finite loss stops with one :class:`WeightlabError` line, on an
    accelerator within :data:`SYNC_EVERY` steps (the loss is read there only then), unless
    ``check_finite`` is False; fp16 steps whose gradients overflow are skipped by the scaler."""
    device = device if device is not None else module_device(model)
    prec = Precision.of(precision, device)
    (train_mode or model.train)()
    params = clip_params if clip_params is not None else [p for g in opt.param_groups for p in g["params"]]
    # on the CPU every step's loss is read at once; on an accelerator the losses are summed where they are
    # and read every SYNC_EVERY steps, so that the host keeps queueing work instead of waiting for each step
    host = resolve_device(device).type == "cpu"
    total_loss, count, running = 0.0, 0, None
    for b, (x, y) in enumerate(
        tqdm(to_device(batches, device), total=total, desc=desc, disable=not progress, leave=False)
    ):
        with prec.autocast():
            loss = loss_fn(b, x, y) if loss_fn is not None else F.cross_entropy(model(x), y)
        if host and check_finite and not torch.isfinite(loss):
            raise WeightlabError(f"{desc}: the loss became {float(loss)}; lower the learning rate")
        if not host:
            step = loss.detach().double() * len(y)
            running = step if running is None else running + step
            if check_finite and (b + 1) % SYNC_EVERY == 0 and not torch.isfinite(running):
                raise WeightlabError(f"{desc}: the loss became {float(loss)}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.unscale(opt)
        if after_backward is not None:
            after_backward(b)
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        prec.step(opt)
        if after_step is not None:
            after_step()
        if scheduler is not None:
            scheduler.step()
        if host:
            total_loss += float(loss.detach()) * len(y)
        count += len(y)
    if running is not None:
        total_loss = float(running)
        if check_finite and not math.isfinite(total_loss):
            raise WeightlabError(f"{desc}: the loss became {total_loss}; lower the learning rate")
    return total_loss / max(count, 1)


def tensor_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, order: torch.Tensor | None = None
) -> Iterator[Batch]:
    """In-memory tensors ``(x, y)`` in batches of ``batch_size``, in ``order`` when given."""
    for i in range(0, len(y), batch_size):
        if order is None:
            yield x[i : i + batch_size], y[i : i + batch_size]
        else:
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


@torch.no_grad()
def correct_count(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[Batch],
    device: str | torch.device | None = None,
    precision: Precision | str | None = None,
) -> tuple[int, int]:
    """(correct top-1 predictions, samples) of ``logits_fn`` over ``batches`` (moved to ``device``; the
    forward pass in ``precision``)."""
    if device is None and isinstance(logits_fn, nn.Module):
        device = module_device(logits_fn)
    prec = Precision.of(precision, device)
    correct = seen = 0
    for x, y in to_device(batches, device):
        with prec.autocast():
            logits = logits_fn(x)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return correct, seen


def evaluate_accuracy(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[Batch],
    *,
    device: str | torch.device | None = None,
    precision: Precision | str | None = None,
    restore_mode: bool = False,
) -> float:
    """Top-1 accuracy (percent) over ``batches`` of a model (put in eval mode; back in its previous
    mode with ``restore_mode``) or of any ``logits_fn(x)``. Batches go to ``device`` (default: where
    the model is)."""
    was = model.training if isinstance(model, nn.Module) else None
    if isinstance(model, nn.Module):
        model.eval()
    correct, seen = correct_count(model, batches, device, precision)
    if restore_mode and was is not None:
        model.train(was)
    return 100.0 * correct / max(seen, 1)


def fit_classifier(
    model: nn.Module,
    data,
    model_cfg,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> list[float]:
    """Train every trainable parameter with Adam and cross-entropy (pretraining a small model) on
    ``device``; returns the mean loss per epoch and leaves the model in eval mode (on ``device``)."""
    dev = place(model, device)
    prec = Precision(precision, dev)
    torch.manual_seed(seed)
    opt = make_optimizer("adam", [p for p in model.parameters() if p.requires_grad], lr=lr)
    n_batches = (len(data) + batch_size - 1) // batch_size
    history = [
        train_epoch(
            model,
            data.batches(batch_size, model_cfg, shuffle=True, seed=seed * 1000 + epoch),
            opt,
            total=n_batches,
            precision=prec,
        )
        for epoch in tqdm(range(epochs), desc="training", disable=not progress, leave=False)
    ]
    model.eval()
    return history
