"""A plain supervised training loop (used to make small models for the quickstart and tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from weightlab.data import ImageArrays


def fit_classifier(model: nn.Module, data: ImageArrays, model_cfg: dict, *, epochs: int = 5, lr: float = 1e-3,
                   batch_size: int = 64, seed: int = 0, progress: bool = True) -> list[float]:
    """Train all parameters with Adam and cross-entropy; returns the mean loss per epoch."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for epoch in tqdm(range(epochs), desc="training", disable=not progress, leave=False):
        total, count = 0.0, 0
        for x, y in data.batches(batch_size, model_cfg, shuffle=True, seed=seed * 1000 + epoch):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        history.append(total / max(count, 1))
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
