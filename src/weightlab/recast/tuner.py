"""The model-level RECAST tuner: swap target modules for template mixtures, undo it, count it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.models import set_submodule
from weightlab.recast.config import RecastConfig
from weightlab.recast.layers import RecastConv2d, RecastLayer, RecastLinear, TemplateBank
from weightlab.recast.planner import BankPlan, plan_banks


def apply_recast(
    model: nn.Module, config: RecastConfig, *, inplace: bool = False, seed: int | None = None
) -> nn.Module:
    """Rewrite ``config.target_modules`` of ``model`` as RECAST layers (PEFT's ``get_peft_model`` analogue).

    Templates start kaiming-normal and coefficients as random unit vectors (the authors' init);
    biases are copied; everything else is untouched. Bank templates are registered as
    ``<first module of the bank>.template_bank.templates``. Fit the banks to the original weights
    with :func:`weightlab.recast.mimicry.reconstruct`. The plan is kept in ``model.recast_plan``.
    """
    if is_recast(model):
        raise WeightlabError("model is already a RECAST model")
    if not inplace:
        model = copy.deepcopy(model)
    plans = plan_banks(model, config)
    if not plans:
        raise WeightlabError(
            f"every module matching {config.target_modules} was skipped (skip_first_per_stage "
            "leaves nothing when a stage has one layer)"
        )
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    modules = dict(model.named_modules())
    with _fork_rng(gen):
        for plan in plans:
            ref = modules[plan.modules[0]].weight
            bank = TemplateBank(plan.n, plan.shape, dtype=ref.dtype, device=ref.device)
            layers = []
            for i, name in enumerate(plan.modules):
                base = modules[name]
                cls = RecastLinear if isinstance(base, nn.Linear) else RecastConv2d
                layer = cls(base, bank, config.coef_sets, owner=i == 0)
                layer.keep_forward_of(base)  # a subclass with a forward of its own keeps it
                set_submodule(model, name, layer)
                layers.append(layer)
            if config.coef_init == "group_orthogonal":
                _group_orthogonal(layers)
    model.recast_config = config
    model.recast_plan = plans
    return model


def _group_orthogonal(layers: list[RecastLayer]) -> None:
    """Savarese & Maire (2019): per set k, the (layers x n) coefficient matrix is orthogonal."""
    k_sets, n = layers[0].coefficients.shape
    for k in range(k_sets):
        m = torch.empty(len(layers), n)
        nn.init.orthogonal_(m)
        for layer, row in zip(layers, m):
            layer.coefficients.data[k].copy_(row)


class _fork_rng:
    """Use ``gen``'s seed for torch's global RNG inside the block (nn.init draws from it)."""

    def __init__(self, gen: torch.Generator | None):
        self.gen = gen

    def __enter__(self):
        if self.gen is not None:
            self.state = torch.random.get_rng_state()
            torch.manual_seed(self.gen.initial_seed())

    def __exit__(self, *exc):
        if self.gen is not None:
            torch.random.set_rng_state(self.state)


def is_recast(model: nn.Module) -> bool:
    return hasattr(model, "recast_plan")


def recast_layers(model: nn.Module) -> dict[str, RecastLayer]:
    """Every RECAST layer of the model, by module name, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, RecastLayer)}


def banks(model: nn.Module) -> dict[str, TemplateBank]:
    """Every template bank by plan name (each registered on the first layer of its bank)."""
    if not is_recast(model):
        raise WeightlabError("not a RECAST model (apply_recast first)")
    modules = dict(model.named_modules())
    return {p.name: base_layer(modules[p.modules[0]]).bank for p in model.recast_plan}


def base_layer(module: nn.Module) -> nn.Module:
    """The innermost wrapped layer of an adapter wrapper (PEFT's ``base_layer`` chain), else the module."""
    while hasattr(module, "base_layer") and isinstance(module.base_layer, nn.Module):
        module = module.base_layer
    return module


def bank_plans(model: nn.Module) -> list[BankPlan]:
    return list(model.recast_plan)


#: what ``mark_only_coefficients_trainable`` does with normalisation layers (TaskModel's ``bn`` modes)
NORM_POLICIES = ("frozen", "task")


def mark_only_coefficients_trainable(
    model: nn.Module, *extra_trainable: nn.Module, norm: str = "frozen"
) -> list[nn.Parameter]:
    """Freeze everything except parameters named ``coefficients`` and the parameters of the
    ``extra_trainable`` modules (e.g. a task head, inside the model or not). Returns the trainable ones.

    ``norm`` says what BatchNorm layers do: ``"frozen"`` (default) keeps them as they are -- affine
    frozen, and they normalise with their running statistics even in train mode, so training moves
    nothing but the coefficients and the extra modules; ``"task"`` trains their affine parameters and
    lets their statistics update in train mode (a per-task copy to keep, as TaskModel's ``bn="task"``)."""
    if norm not in NORM_POLICIES:
        raise WeightlabError(f"unknown norm policy '{norm}' (use {' or '.join(NORM_POLICIES)})")
    extra = [p for m in extra_trainable for p in m.parameters()]
    extra_ids = {id(p) for p in extra}
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norm_ids = {id(p) for m in norms for p in m.parameters()} if norm == "task" else set()
    trainable, seen = [], set()
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] == "coefficients" or id(p) in extra_ids or id(p) in norm_ids)
        if p.requires_grad:
            trainable.append(p)
            seen.add(id(p))
    for p in extra:  # a head that lives outside the model
        if id(p) not in seen:
            p.requires_grad_(True)
            trainable.append(p)
            seen.add(id(p))
    for m in norms:
        for key in [k for k, hook in m._forward_pre_hooks.items() if hook is _eval_norm]:
            del m._forward_pre_hooks[key]
        if norm == "frozen":
            m.register_forward_pre_hook(_eval_norm)
    return trainable


def _eval_norm(module: nn.Module, _inputs) -> None:
    """Normalise with the running statistics (and leave them as they are), in train mode too."""
    module.training = False


def materialize(model: nn.Module) -> nn.Module:
    """A plain copy of the model: every RECAST layer (and with it every bank) replaced by an
    ordinary Linear/Conv2d holding its generated weight."""
    plain = copy.deepcopy(model)
    for name, layer in recast_layers(plain).items():
        set_submodule(plain, name, layer.to_plain())
    for attr in ("recast_config", "recast_plan"):
        plain.__dict__.pop(attr, None)
    return plain


@dataclass(frozen=True)
class RecastCounts:
    """Parameter accounting of a RECAST model (Sec. 2.3)."""

    coefficients: int  # per task: the only task-specific numbers besides a head
    templates: int
    replaced: int  # weights of the original modules the banks replace
    modules: int
    banks: int

    @property
    def saving(self) -> int:
        """S = L*M*d^2 - (G*n*d^2 + L*M*n*K): numbers saved against the replaced weights (negative: more)."""
        return self.replaced - (self.templates + self.coefficients)

    def to_dict(self) -> dict:
        return dict(
            coefficients_per_task=self.coefficients,
            template_numbers=self.templates,
            replaced_weights=self.replaced,
            saving_S=self.saving,
            modules=self.modules,
            banks=self.banks,
        )


def count_parameters(model: nn.Module) -> RecastCounts:
    layers = recast_layers(model)
    bank_map = banks(model)
    return RecastCounts(
        coefficients=sum(l.coefficients.numel() for l in layers.values()),
        templates=sum(b.templates.numel() for b in bank_map.values()),
        replaced=sum(l.bank.templates[0].numel() for l in layers.values()),
        modules=len(layers),
        banks=len(bank_map),
    )
