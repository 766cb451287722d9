"""RECAST configuration (PEFT-style dataclass) and the presets (rows of the architecture table,
:mod:`weightlab.models.families`)."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from weightlab.errors import WeightlabError

#: Fig. 6a sharing schemes, as layers per group: Low (2), Balanced (4), Extreme (all layers of a stage).
#: Neural Mimicry's methods and weight losses (:mod:`weightlab.recast.mimicry`)
METHODS = ("recipe", "closed_form", "closed_form+recipe")
LOSSES = ("smoothl1", "mse", "l1")

SHARING_SCHEMES: dict[str, int | None] = {"low": 2, "balanced": 4, "extreme": None}

MODULE_KINDS = ("linear", "conv2d")


@dataclass
class RecastConfig:
    """Which modules become template mixtures, and how their template banks are shared.

    A target module's name is parsed as ``<stage>.<layer index>.<role>`` (``blocks.3.attn.qkv``,
    ``layer2.4.conv1``, ``5.0.fn.0``). Modules of one stage are split into groups of consecutive
    layers; one bank of ``templates`` full-shape templates is shared per (stage, group, role).

    Attributes:
        target_modules: a regular expression matched in full against module names (the architecture
            table's syntax and PEFT's, ``blocks\\.\\d+\\.mlp\\.fc[12]``), or a list of glob patterns
            (``["blocks.*.mlp.fc1"]``; the published suites' rows and earlier configs are written so).
        templates: templates per bank ``n``; ``None`` means as many as layers in the group.
        coef_sets: coefficient sets ``K`` per module; the weight is the mean of the K mixtures.
        num_groups: split each stage into this many groups of consecutive layers (``G``).
        layers_per_group: alternatively, the group size.
        sharing: a Fig. 6a scheme ('low', 'balanced', 'extreme'), another way to set the group size.
        skip_first_per_stage: leave the first layer of every stage as it is (ResNets: it changes shape).
        module_kinds: which module types may be targeted ('linear', 'conv2d').
        coef_init: 'orthogonal' (each set a random unit vector, the authors' code) or
            'group_orthogonal' (the layers x n matrix of a bank orthogonal, Savarese & Maire 2019).
        layers_pattern: a regular expression for the container that holds the layers (PEFT's
            ``layers_pattern``): the layer index is the number after its first match (``blocks\\.\\d+``
            reads timm EfficientNet's ``blocks.<stage>.<block>``). ``None``: the first number in the name.
        split_by_shape: modules of one (stage, group, role) with different weight shapes form one bank per
            run of consecutive equal shapes (else: an error).
    """

    target_modules: str | list[str] = field(default_factory=list)
    templates: int | None = 2
    coef_sets: int = 2
    num_groups: int | None = None
    layers_per_group: int | None = None
    sharing: str | None = None
    skip_first_per_stage: bool = False
    module_kinds: tuple[str, ...] = MODULE_KINDS
    coef_init: str = "orthogonal"
    layers_pattern: str | None = None
    split_by_shape: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)
        self.module_kinds = tuple(self.module_kinds)
        if not self.target_modules:
            raise WeightlabError("RecastConfig.target_modules is empty: name the modules to template")
        if isinstance(self.target_modules, str):
            try:
                re.compile(self.target_modules)
            except re.error as e:
                raise WeightlabError(
                    f"target_modules {self.target_modules!r}: not a regular expression ({e})"
                ) from None
        if self.layers_pattern is not None:
            try:
                re.compile(self.layers_pattern)
            except (re.error, TypeError) as e:
                raise WeightlabError(
                    f"layers_pattern {self.layers_pattern!r}: not a regular expression ({e})"
                ) from None
        for key in ("templates", "coef_sets", "num_groups", "layers_per_group"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise WeightlabError(f"RecastConfig.{key} must be a whole number, got {v!r}")
        if self.templates is not None and self.templates < 1:
            raise WeightlabError(f"templates must be >= 1, got {self.templates}")
        if self.coef_sets < 1:
            raise WeightlabError(f"coef_sets must be >= 1, got {self.coef_sets}")
        given = [k for k in ("num_groups", "layers_per_group", "sharing") if getattr(self, k) is not None]
        if len(given) > 1:
            raise WeightlabError(f"set only one of num_groups / layers_per_group / sharing (got {', '.join(given)})")
        if self.num_groups is not None and self.num_groups < 1:
            raise WeightlabError(f"num_groups must be >= 1, got {self.num_groups}")
        if self.layers_per_group is not None and self.layers_per_group < 1:
            raise WeightlabError(f"layers_per_group must be >= 1, got {self.layers_per_group}")
        if self.sharing is not None and self.sharing not in SHARING_SCHEMES:
            raise WeightlabError(f"unknown sharing scheme '{self.sharing}' (use {', '.join(SHARING_SCHEMES)})")
        bad = [k for k in self.module_kinds if k not in MODULE_KINDS]
        if bad:
            raise WeightlabError(f"unknown module kind(s) {bad} (use {', '.join(MODULE_KINDS)})")
        if self.coef_init not in ("orthogonal", "group_orthogonal"):
            raise WeightlabError(f"unknown coef_init '{self.coef_init}' (use orthogonal or group_orthogonal)")

    def targets(self, name: str) -> bool:
        """Whether the module ``name`` is one of the target modules."""
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, name) is not None
        return any(fnmatch.fnmatchcase(name, p) for p in self.target_modules)

    def group_size(self) -> int | None:
        """Layers per group implied by ``layers_per_group`` / ``sharing`` (None: whole stage or num_groups)."""
        if self.layers_per_group is not None:
            return self.layers_per_group
        if self.sharing is not None:
            return SHARING_SCHEMES[self.sharing]
        return None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["module_kinds"] = list(self.module_kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecastConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise WeightlabError(f"unknown RecastConfig field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **changes: Any) -> RecastConfig:
        return dataclasses.replace(self, **changes)


def _presets() -> dict[str, dict[str, Any]]:
    from weightlab.models.families import presets

    return {name: p.config_fields() for name, p in presets().items()}


def __getattr__(name: str) -> Any:
    """``PRESETS``: every family's presets (``vit-att``, ``vit-mlp``, ``vit-att-mlp``, ``resnet``,
    ``cifar-resnet``, ``convmixer``) as RecastConfig fields, read from the architecture table
    (:mod:`weightlab.models.families`) when asked for, so that importing this module imports no torch."""
    if name == "PRESETS":
        return _presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preset(name: str, **overrides: Any) -> RecastConfig:
    """A named preset (``vit-att``, ``vit-mlp``, ``vit-att-mlp``, ``resnet``, ``cifar-resnet``, ``convmixer``).

    ``None`` overrides are ignored; ``templates="auto"`` means as many templates as layers per group.
    """
    presets = _presets()
    if name not in presets:
        raise WeightlabError(f"unknown RECAST preset '{name}' (use one of {', '.join(presets)})")
    base = dict(presets[name])
    grouping = {"num_groups", "layers_per_group", "sharing"}
    if grouping & {k for k, v in overrides.items() if v is not None}:
        for k in grouping:
            base.pop(k, None)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if base.get("templates") == "auto":  # as many templates as layers in the group
        base["templates"] = None
    return RecastConfig(**base)


def preset_for_family(family) -> str:
    """The preset of a model family (a name or a :class:`~weightlab.models.families.Family`): its
    ``recast_preset`` in the family table."""
    from weightlab.models.families import get_family

    fam = get_family(family)
    if fam.recast_preset is None:
        raise WeightlabError(f"no RECAST preset for model family '{fam.name}': pass target modules explicitly")
    return fam.recast_preset
