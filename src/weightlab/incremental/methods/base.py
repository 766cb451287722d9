"""The adapter interface and registry: every per-task method is an :class:`Adapter` in its own file,
registered with one decorator, optionally stacked on a RECAST base whose coefficients then train too
(``recast+<adapter>``)::

    @dataclass
    class MyOptions:
        rank: int = option(1, "rank of the update", minimum=1)

    @ADAPTERS.register("mine", display="Mine", paper="Someone et al. 2025", options=MyOptions)
    class MyAdapter(Adapter):
        placement = "lowrank"          # where it goes: a key of each family's placements (None: anywhere)
        wrapper = MyWrappedLayer       # modules with ``base_layer`` and ``merged_weight()`` (or override merge)
        def inject(self, backbone, family): ...
        def is_trainable(self, name): ...

It then appears in ``method_names()``, in the suites of every family that has its placement, in the
CLI, and in the contract tests (``tests/test_contracts.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.models import set_submodule
from weightlab.models.families import Family
from weightlab.registry import Registry, options_dict, registered_options

ADAPTERS: Registry[type[Adapter]] = Registry("adapter", package="weightlab.incremental.methods")


def plain_layer(layer: nn.Module) -> nn.Module:
    """``layer`` as a plain ``nn.Linear`` / ``nn.Conv2d`` (a RECAST layer generates its weight once)."""
    to_plain = getattr(layer, "to_plain", None)
    return to_plain() if to_plain is not None else layer


class Adapter:
    """Adds task-specific modules/parameters to a backbone (in place) and says which train.

    Subclasses are registered in :data:`ADAPTERS` (name, display name, paper, options dataclass) and
    override what they need."""

    placement: str | None = None  # key of Family.placements it needs unless given targets; None: any model
    mergeable = True  # materialize() folds it into plain weights
    owns_rates = False  # True: its param_groups set every rate from its own options (the learner's lr is unused)
    wrapper: type[nn.Module] | None = None  # the module it wraps layers in (default merge)

    def __init__(self, **options: Any):
        entry = getattr(type(self), "registry_entry", None)
        self.name = entry.name if entry is not None else type(self).__name__.lower()
        self.opts = registered_options(type(self), options, self.name)
        self.options = options_dict(self.opts)  # every option, defaults included

    # -- where it goes ----------------------------------------------------------------------------
    def applies_to(self, family: Family) -> str | None:
        """Why the adapter cannot go on a model of ``family`` with its options (None: it can)."""
        targets = getattr(self.opts, "targets", None)
        if self.placement is None or targets or self.placement in family.placements:
            return None
        hint = "; pass targets=REGEX" if hasattr(self.opts, "targets") else ""
        return (
            f"{self.name} does not apply to model family '{family.name}': it needs the '{self.placement}' "
            f"placement, which that family has no entry for in weightlab.models.families{hint}"
        )

    def pattern(self, family: Family) -> str:
        """The module-name pattern it is placed on: its ``targets`` option, else the family's placement."""
        targets = getattr(self.opts, "targets", None)
        if targets:
            return targets
        reason = self.applies_to(family)
        if reason:
            raise WeightlabError(reason)
        return family.placements[self.placement]

    # -- hooks ------------------------------------------------------------------------------------
    def inject(self, backbone: nn.Module, family: Family) -> None:
        """Add the adapter's modules; called once, under the method seed."""

    def is_trainable(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` belongs to the adapter (trains per task)."""
        return False

    def param_groups(
        self, named: dict[str, nn.Parameter], head: Iterable[nn.Parameter], lr: float
    ) -> list[dict] | None:
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
        """Fold the adapter into plain layers, in place (only when ``mergeable``): every ``wrapper``
        module becomes its base layer, made plain, carrying the wrapper's ``merged_weight()``."""
        if self.wrapper is None:
            return
        for name, m in [(n, m) for n, m in backbone.named_modules() if isinstance(m, self.wrapper)]:
            with torch.no_grad():
                w = m.merged_weight()
            layer = plain_layer(m.base_layer)
            with torch.no_grad():
                layer.weight.copy_(w)
            set_submodule(backbone, name, layer)

    def describe(self) -> dict:
        return dict(adapter=self.name, **self.options)


@ADAPTERS.register("full", display="full fine-tuning", summary="every backbone weight trains per task")
class FullFineTuning(Adapter):
    """Every backbone parameter trains per task: the storage upper bound (a whole model per task)."""

    def is_trainable(self, name: str) -> bool:
        return True
