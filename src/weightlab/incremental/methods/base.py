"""The adapter interface: every per-task method is an :class:`Adapter` (one class, one file each),
optionally stacked on a RECAST base whose coefficients then train too (``recast+<adapter>``)."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


class Adapter:
    """Adds task-specific modules/parameters to a backbone (in place) and says which train.

    Subclasses set ``name`` and ``families`` (None: any) and override what they need.
    """

    name = "none"
    families: tuple[str, ...] | None = None
    mergeable = True  # materialize() folds it into plain weights

    def __init__(self, **options: Any):
        self.options = options

    def inject(self, backbone: nn.Module, family: str) -> None:
        """Add the adapter's modules; called once, under the method seed."""

    def is_trainable(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` belongs to the adapter (trains per task)."""
        return False

    def param_groups(self, named: dict[str, nn.Parameter], head: Iterable[nn.Parameter], lr: float) -> list[dict] | None:
        """Optimiser groups, or None for one group at the learner's learning rate."""
        return None

    def optimizer(self) -> str | None:
        """Force an optimiser ('adam' / 'adamw'), or None for the learner's."""
        return None

    def before_task(self, model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Hook run on a task's training data before its first step (e.g. RoSA's mask selection)."""

    def pack_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The task state as stored in an artifact (e.g. masks as bits)."""
        return state

    def unpack_state(self, state: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inverse of :meth:`pack_state`; ``like`` holds the live task tensors (for shapes)."""
        return state

    def merge(self, backbone: nn.Module) -> None:
        """Fold the adapter into plain layers, in place (only when ``mergeable``)."""

    def describe(self) -> dict:
        return dict(adapter=self.name, **self.options)


class FullFineTuning(Adapter):
    """Every backbone parameter trains per task: the storage upper bound (a whole model per task)."""

    name = "full"

    def is_trainable(self, name: str) -> bool:
        return True
