"""``RecastConfig``: RECAST as a PEFT method's configuration (``get_peft_model(model, RecastConfig())``)."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Any

from peft.config import PeftConfig

from weightlab.errors import WeightlabError
from weightlab.peft.peft_type import recast_peft_type
from weightlab.recast.config import RecastConfig as PlanConfig

INITS = ("closed_form", "recipe")


@dataclass
class RecastConfig(PeftConfig):
    """RECAST (template banks + per-layer coefficients) as a PEFT adapter.

    Every targeted Linear / Conv2d becomes ``W = (1/K) sum_k sum_i C^k_i T_i``: the templates ``T`` of
    its bank are derived once from the base weights (``init``) and frozen; each adapter (a task) holds
    only the coefficients ``C`` of every targeted layer (``K x n`` numbers a layer), plus
    ``modules_to_save`` (a head, per-task norms). With the closed form and ``templates=None`` (as many
    templates as layers in a group) a freshly wrapped model is the base model to float rounding.

    Leave ``target_modules`` (and the grouping) unset to use the architecture table
    (:mod:`weightlab.recast.architectures`): Hugging Face BERT / RoBERTa / ViT / DeiT, timm ViT / ResNet /
    EfficientNet / MobileNetV3 / ConvNeXt, torchvision ResNet / MobileNet. ``weightlab recast plan``
    prints a plan before anything is fitted.

    Filled in when the adapter is injected (saved in ``adapter_config.json``): ``bank_plan`` (every bank:
    its modules, shape and ``n``) and ``templates_sha256`` (the hash of the frozen templates, stored once
    beside the adapters as ``recast_templates.safetensors``).
    """

    target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "Module names (suffixes) or a regex to template; None: the architecture table's."},
    )
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Modules never templated."})
    templates: int | None = field(
        default=None, metadata={"help": "Templates per bank n; None: as many as layers in the group (exact)."}
    )
    coef_sets: int = field(default=2, metadata={"help": "Coefficient sets K per layer (their mean mixes)."})
    layers_per_group: int | None = field(
        default=None, metadata={"help": "Consecutive layers sharing one bank; None: the table's (else a whole stage)."}
    )
    num_groups: int | None = field(default=None, metadata={"help": "Alternatively: groups per stage (G)."})
    sharing: str | None = field(default=None, metadata={"help": "Alternatively: low / balanced / extreme."})
    skip_first_per_stage: bool | None = field(
        default=None, metadata={"help": "Leave the first layer of each stage as it is (None: the table's)."}
    )
    layers_pattern: str | None = field(
        default=None, metadata={"help": "Regex of the container holding the layers (None: the table's)."}
    )
    init: str = field(default="closed_form", metadata={"help": "How templates are fitted: closed_form or recipe."})
    recipe: dict | None = field(default=None, metadata={"help": "MimicryConfig overrides for init='recipe'."})
    seed: int = field(default=0, metadata={"help": "Seed of the recipe's initialisation and noise."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained and stored per adapter (heads, per-task norms)."}
    )
    save_templates: bool = field(
        default=True, metadata={"help": "Write recast_templates.safetensors once beside the adapters."}
    )
    bank_plan: list[dict] | None = field(default=None, metadata={"help": "Filled in: the banks."})
    templates_sha256: str | None = field(default=None, metadata={"help": "Filled in: hash of the templates."})
    architecture: str | None = field(default=None, metadata={"help": "Filled in: the table row used, if any."})
    target_parameters: list[str] | None = None
    layers_to_transform: list[int] | int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = recast_peft_type()
        self.plan_config()  # the planning fields are checked where they are defined (weightlab.recast.config)
        if self.init not in INITS:
            raise WeightlabError(f"unknown RECAST init '{self.init}' (use {', '.join(INITS)})")
        if self.target_parameters:
            raise WeightlabError("RECAST templates modules, not parameters: target_parameters is not supported")
        if isinstance(self.target_modules, set):
            self.target_modules = sorted(self.target_modules)

    def plan_config(self) -> PlanConfig:
        """The planner's configuration of these fields (its checks are theirs); every matched module is
        named explicitly, and modules of one bank with different shapes form one bank per shape."""
        return PlanConfig(
            target_modules=["*"],
            templates=self.templates,
            coef_sets=self.coef_sets,
            num_groups=self.num_groups,
            layers_per_group=self.layers_per_group,
            sharing=self.sharing,
            skip_first_per_stage=bool(self.skip_first_per_stage),
            layers_pattern=self.layers_pattern,
            split_by_shape=True,
        )

    # -- templates stored once beside the adapters -------------------------------------------------
    # PEFT writes each adapter's config with ``config.save_pretrained(<dir>)`` (``<root>`` for the
    # "default" adapter, ``<root>/<name>`` for the others); the tuner attaches itself to every config it
    # injects, so that the templates go to ``<root>`` once, never into an adapter's file.

    def attach(self, tuner, adapter_name: str) -> None:
        object.__setattr__(self, "_recast_tuner", weakref.ref(tuner))
        object.__setattr__(self, "_recast_adapter", adapter_name)

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, **kwargs)
        ref = getattr(self, "_recast_tuner", None)
        tuner = ref() if ref is not None else None
        if tuner is None or not self.save_templates:
            return
        root = os.path.normpath(save_directory)
        name = getattr(self, "_recast_adapter", "default")
        if name != "default" and os.path.basename(root) == name:
            root = os.path.dirname(root)
        tuner.save_templates(root)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, subfolder: str | None = None, **kwargs):
        config = super().from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        path = os.path.join(pretrained_model_name_or_path, subfolder) if subfolder else pretrained_model_name_or_path
        if os.path.isdir(path):
            object.__setattr__(config, "_recast_source", path)
        return config

    def template_dirs(self) -> list[str]:
        """Where a loaded adapter looks for ``recast_templates.safetensors``: its folder, then the parent."""
        src = getattr(self, "_recast_source", None)
        return [str(src), os.path.dirname(os.path.normpath(str(src)))] if src else []
