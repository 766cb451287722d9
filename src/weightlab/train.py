"""A plain supervised training loop (used to make small models for the quickstart and tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightlab.data import ImageArrays
from weightlab.errors import WeightlabError


def train_epoch(model: nn.Module, data: ImageArrays, model_cfg: dict, opt: torch.optim.Optimizer, *,
                batch_size: int, seed: int, scheduler=None, desc: str = "training", progress: bool = False) -> float:
    """One shuffled (seeded) epoch of cross-entropy training; returns the mean loss.
    A non-finite loss stops with a one-line :class:`WeightlabError`."""
    model.train()
    total, count = 0.0, 0
    n_batches = (len(data) + batch_size - 1) // batch_size
    batches = data.batches(batch_size, model_cfg, shuffle=True, seed=seed)
    for x, y in tqdm(batches, total=n_batches, desc=desc, disable=not progress, leave=False):
        loss = F.cross_entropy(model(x), y)
        if not torch.isfinite(loss):
            raise WeightlabError(f"{desc}: the loss became {float(loss)}; lower the learning rate (--lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * len(y)
        count += len(y)
    return total / max(count, 1)


def fit_classifier(model: nn.Module, data: ImageArrays, model_cfg: dict, *, epochs: int = 5, lr: float = 1e-3,
                   batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Train all parameters with Adam and cross-entropy; returns the mean loss per epoch."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = [train_epoch(model, data, model_cfg, opt, batch_size=batch_size, seed=seed * 1000 + epoch)
               for epoch in tqdm(range(epochs), desc="training", disable=not progress, leave=False)]
    model.eval()
    return history


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ImageArrays, model_cfg: dict, batch_size: int = 256) -> float:
    """Top-1 accuracy (percent) of ``model`` on ``data``; leaves the model in eval mode."""
    model.eval()
    correct = 0
    for x, y in data.batches(batch_size, model_cfg):
        correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / max(len(data), 1)
