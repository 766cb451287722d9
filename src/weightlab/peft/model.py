"""``RecastModel``: the PEFT tuner of RECAST.

One set of frozen template banks per model, derived once from the base weights when the first adapter
is injected; every adapter (task) adds its own coefficients to each templated layer. The banks live on
the tuner as buffers (``base_model.recast_templates.<bank>``); they are never part of an adapter's
file, and ``save_pretrained`` writes them once as ``recast_templates.safetensors`` beside the adapters
(VeRA's ``save_projection``, without a copy per adapter). Loading reads that file when it is there and
otherwise derives the templates again from the base weights, checking them against the hash in the
adapter's config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings

import torch
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.io import load_weights, save_tensors
from weightlab.peft.config import RecastConfig
from weightlab.peft.layer import SUPPORTED_TYPES, RecastPeftLayer
from weightlab.peft.peft_type import PREFIX
from weightlab.recast.architectures import resolve_plan_options
from weightlab.recast.planner import BankPlan, plan_banks
from weightlab.recast.problem import BankProblem

TEMPLATES_FILE = "recast_templates.safetensors"
_PLAN_FIELDS = (
    "templates",
    "coef_sets",
    "layers_per_group",
    "num_groups",
    "sharing",
    "skip_first_per_stage",
    "layers_pattern",
    "architecture",
    "init",
)


class RecastModel(BaseTuner):
    """RECAST as a PEFT tuner (see :class:`~weightlab.peft.RecastConfig`)."""

    prefix: str = PREFIX
    tuner_layer_cls = RecastPeftLayer
    target_module_mapping: dict = {}
    uses_shared_state: bool = True

    # -- planning and templates, once per model -----------------------------------------------------
    def inject_adapter(self, model: nn.Module, adapter_name: str, *args, **kwargs) -> None:
        config = self.peft_config[adapter_name]
        if not isinstance(config, RecastConfig):
            raise WeightlabError(f"adapter '{adapter_name}' has a {type(config).__name__}, not a RecastConfig")
        if getattr(self, "recast_plan", None) is None:
            self._build_banks(model, config)
        else:
            self._check_same_banks(config)
            self._check_targets_banked(model, config)
        config.attach(self, adapter_name)
        super().inject_adapter(model, adapter_name, *args, **kwargs)

    def _plan(self, model: nn.Module, config: RecastConfig) -> list[BankPlan]:
        plans, single = plan_for(model, config)
        if single:
            warnings.warn(
                f"RECAST leaves {len(single)} matched module(s) as they are, each alone in its bank "
                f"(e.g. {single[0]}); `weightlab recast plan` lists them",
                stacklevel=4,
            )
        return plans

    def _build_banks(self, model: nn.Module, config: RecastConfig) -> None:
        modules = dict(model.named_modules())
        if config.bank_plan is not None:  # a saved adapter (or a converted weightlab model): its plan is the truth
            if config.target_modules is None:
                config.target_modules = sorted(m for d in config.bank_plan for m in d["modules"])
            plans = _saved_plan(config.bank_plan, modules)
        else:
            plans = self._plan(model, config)
        templates, coefficients = getattr(config, "_recast_given", None) or (None, None)
        for folder in config.template_dirs() if templates is None else []:
            path = os.path.join(folder, TEMPLATES_FILE)
            if os.path.isfile(path):
                templates, coefficients = _read_templates(path, plans, config.templates_sha256)
                break
        if templates is None:
            if config.templates_sha256 is not None and config.init != "closed_form":
                where = config.template_dirs()
                raise WeightlabError(
                    f"the adapter's templates were fitted by '{config.init}' and {TEMPLATES_FILE} is not beside it "
                    + (
                        f"(looked in {', '.join(where)})"
                        if where
                        else "(its config came without a folder: PEFT does not pass the folder along with config=...; "
                        "leave config out, or read it with RecastConfig.from_pretrained(folder))"
                    )
                )
            templates, coefficients = _fit(plans, modules, config, model)
            if config.templates_sha256 is not None and _sha256(templates, plans) != config.templates_sha256:
                raise WeightlabError(
                    "the templates derived from this base model differ from the adapter's (templates_sha256): "
                    f"a different base model, or put {TEMPLATES_FILE} beside the adapter"
                )
        self.recast_templates = BufferDict({p.name: templates[p.name] for p in plans}, persistent=True)
        self.recast_plan = plans
        self._base_coefficients = coefficients
        self._bank_of = {m: p.name for p in plans for m in p.modules}
        self._plan_options = {k: getattr(config, k) for k in _PLAN_FIELDS}
        self._templates_sha = _sha256(templates, plans)  # the templates are frozen: hashed once
        config.bank_plan = [p.to_dict() for p in plans]
        config.templates_sha256 = self._templates_sha

    def _check_same_banks(self, config: RecastConfig) -> None:
        mine = {k: getattr(config, k) for k in _PLAN_FIELDS}
        if config.bank_plan is not None and config.bank_plan != [p.to_dict() for p in self.recast_plan]:
            raise WeightlabError("this adapter was made for other template banks than the model's")
        defaults = {f.name: f.default for f in dataclasses.fields(RecastConfig)}
        differing = [k for k in _PLAN_FIELDS if mine[k] != defaults[k] and mine[k] != self._plan_options[k]]
        if differing:
            raise WeightlabError(
                f"every RECAST adapter of a model shares its template banks: {', '.join(differing)} differ from "
                "the first adapter's"
            )
        for k in _PLAN_FIELDS:
            setattr(config, k, self._plan_options[k])
        config.bank_plan = [p.to_dict() for p in self.recast_plan]
        if config.templates_sha256 is not None and config.templates_sha256 != self._templates_sha:
            raise WeightlabError("this adapter was trained on other templates than the model's (templates_sha256)")
        config.templates_sha256 = self._templates_sha
        if config.target_modules is None:
            config.target_modules = sorted(self._bank_of)

    def _check_targets_banked(self, model: nn.Module, config: RecastConfig) -> None:
        """A later adapter's target_modules must name modules the first adapter's banks template: every adapter
        of a model mixes the same frozen templates, so there are none for other modules."""
        if config.target_modules is None:
            return
        named = [
            n
            for n, m in model.named_modules()
            if n and isinstance(m, (*SUPPORTED_TYPES, RecastPeftLayer)) and check_target_module_exists(config, n)
        ]
        outside = [n for n in named if n not in self._bank_of]
        if outside or not named:
            raise WeightlabError(
                "every RECAST adapter of a model mixes the template banks made for its first adapter, and "
                + (
                    f"{len(outside)} module(s) this adapter targets have none (e.g. {outside[0]})"
                    if outside
                    else f"target_modules {config.target_modules!r} names none of their modules"
                )
                + ": give the first adapter every module any adapter will use, or use another base model"
            )

    def templates_sha256(self) -> str:
        return self._templates_sha

    def save_templates(self, directory: str) -> str:
        """Write the banks (and the base coefficients new adapters start from) once to ``directory``."""
        path = os.path.join(directory, TEMPLATES_FILE)
        if _file_sha(path) == self._templates_sha:  # every adapter's config asks; the first one wrote it
            return path
        tensors = {f"templates.{p.name}": self.recast_templates[p.name] for p in self.recast_plan}
        tensors.update({f"base_coefficients.{m}": c for m, c in self._base_coefficients.items()})
        save_tensors(
            path, tensors, metadata={"format": "weightlab.recast.templates/1", "sha256": self.templates_sha256()}
        )
        return path

    # -- PEFT hooks -----------------------------------------------------------------------------------
    def _prepare_adapter_config(self, peft_config: RecastConfig, model_config: dict) -> RecastConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = sorted(self._bank_of)
        return peft_config

    def _check_target_module_exists(self, peft_config: RecastConfig, key: str) -> bool:
        # a later adapter goes on the banked modules its own target_modules name (all of them when unset)
        return key in self._bank_of and bool(check_target_module_exists(peft_config, key))

    def add_weighted_adapter(
        self, adapters: list[str], weights: list[float], adapter_name: str, combination_type: str = "linear", **kw
    ) -> None:
        """A new adapter whose coefficients are ``sum_i weights[i] * coefficients of adapters[i]`` on every
        layer (RECAST's weight is linear in its coefficients: this is the weighted mixture of the adapters'
        weights). Only ``combination_type="linear"``; LoRA's SVD / TIES / DARE combinations do not apply."""
        if combination_type != "linear":
            raise WeightlabError(
                f"RECAST combines adapters linearly (combination_type='linear'), not with {combination_type!r}"
            )
        unknown = [a for a in adapters if a not in self.peft_config]
        if unknown or len(adapters) != len(weights) or not adapters:
            raise WeightlabError(
                f"add_weighted_adapter needs known adapters and one weight each (unknown: {unknown or 'none'})"
            )
        if adapter_name in self.peft_config:
            raise WeightlabError(f"an adapter named '{adapter_name}' exists already")
        self.peft_config[adapter_name] = dataclasses.replace(self.peft_config[adapters[0]])
        self.inject_adapter(self.model, adapter_name)
        for key, layer in self.model.named_modules():
            if isinstance(layer, RecastPeftLayer) and adapter_name in layer.recast_coefficients:
                base = self._base_coefficients[key]  # an adapter absent from a layer leaves its base weight there
                with torch.no_grad():
                    mixed = sum(
                        w
                        * (layer.recast_coefficients[a] if a in layer.recast_coefficients else base.to(layer.templates))
                        for a, w in zip(adapters, weights)
                    )
                    layer.recast_coefficients[adapter_name].copy_(mixed)

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        coefficients = self._base_coefficients[current_key]
        if isinstance(target, RecastPeftLayer):
            target.update_layer(adapter_name, coefficients, inference_mode=peft_config.inference_mode)
            return
        new = RecastPeftLayer(target, self.recast_templates, self._bank_of[current_key])
        new.update_layer(adapter_name, coefficients, inference_mode=peft_config.inference_mode)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        setattr(parent, child_name, new_module)
        if hasattr(child, "base_layer"):
            child = child.base_layer
        # low_cpu_mem_usage: the coefficients are made on the meta device and get their values when the
        # adapter's state dict is assigned; only real tensors move
        if not any(p.device.type == "meta" for p in new_module.parameters()):
            new_module.to(child.weight.device)

    def _check_merge_allowed(self):
        super()._check_merge_allowed()
        if len(self.active_adapters) > 1:
            raise WeightlabError("RECAST adapters replace a layer's weight: merge one adapter at a time")

    def set_adapter(self, adapter_name, inference_mode: bool = False) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) > 1:
            raise WeightlabError("RECAST adapters replace a layer's weight: activate one adapter at a time")
        super().set_adapter(adapter_name, inference_mode=inference_mode)

    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        out = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        return {k: v for k, v in out.items() if ".recast_templates." not in k}


# -- planning -----------------------------------------------------------------------------------------
def plan_for(model: nn.Module, config: RecastConfig) -> tuple[list[BankPlan], list[str]]:
    """The banks RECAST makes of ``model`` under ``config`` (unset fields from the architecture table, filled
    in on ``config``), and the matched modules left as they are because they would be alone in a bank."""
    opts = resolve_plan_options(model, config)
    names = [
        name
        for name, module in model.named_modules()
        if name
        and isinstance(module, SUPPORTED_TYPES)
        and not isinstance(module, BaseTunerLayer)
        and bool(check_target_module_exists(config, name))
    ]
    if not names and any(isinstance(m, RecastPeftLayer) for m in model.modules()):
        raise WeightlabError(
            "this model already holds RECAST adapters (get_peft_model changes the model it is given in place): "
            "load or wrap a fresh base model, or add_adapter on the PEFT model"
        )
    if not names:
        where = f" (architecture table: {opts.architecture})" if opts.architecture else ""
        raise WeightlabError(
            f"no Linear / Conv2d module of this {type(model).__name__} matches target_modules "
            f"{config.target_modules!r}{where}"
        )
    plans = plan_banks(model, config.plan_config(), names=names)  # the unset fields filled in above
    single = [p.modules[0] for p in plans if len(p.modules) == 1]
    plans = [p for p in plans if len(p.modules) > 1]
    if not plans:
        raise WeightlabError(
            f"no template bank would be shared: each of the {len(names)} matched modules is alone in its "
            f"(stage, group, role, shape); check layers_pattern ({opts.layers_pattern!r}: the number after it is "
            "the layer index) and the grouping"
        )
    return plans, single


def describe_plan(model: nn.Module, config: RecastConfig | None = None) -> str:
    """A printout of the banks (stage, group, role, modules, shape, n), their counts and the modules left
    as they are -- before anything is fitted."""
    import copy

    config = copy.deepcopy(config) if config is not None else RecastConfig()
    plans, single = plan_for(model, config)
    k = config.coef_sets
    replaced = sum(len(p.modules) * _numel(p.shape) for p in plans)
    templates = sum(p.n * _numel(p.shape) for p in plans)
    coefficients = sum(len(p.modules) * p.n * k for p in plans)
    lines = [
        f"RECAST plan for {type(model).__name__}"
        + (f" (architecture row {config.architecture})" if config.architecture else " (no architecture row)"),
        f"  target_modules: {config.target_modules!r}",
        f"  layers_pattern: {config.layers_pattern!r}  layers_per_group: {config.layers_per_group}  "
        f"skip_first_per_stage: {bool(config.skip_first_per_stage)}  K: {k}",
        f"  {len(plans)} banks, {sum(len(p.modules) for p in plans)} modules",
    ]
    for p in plans:
        first, last = p.modules[0], p.modules[-1]
        lines.append(
            f"    {p.name}: role '{p.role}', n={p.n}, shape {list(p.shape)}, {len(p.modules)} modules "
            f"({first} .. {last})"
        )
    if single:
        lines.append(f"  left as they are (alone in their bank): {', '.join(single)}")
    lines.append(
        f"  numbers: {coefficients:,} coefficients per task; {templates:,} template numbers (frozen, shared) "
        f"for {replaced:,} replaced weights"
    )
    return "\n".join(lines)


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


# -- fitting ------------------------------------------------------------------------------------------
@torch.no_grad()
def _fit(plans: list[BankPlan], modules: dict[str, nn.Module], config: RecastConfig, model: nn.Module | None = None):
    """The banks' templates and coefficients: the closed form, or the authors' recipe with its per-role loss
    weights, as the native path fits them: a model of a known family gets that family's recipe (as
    ``weightlab recast mimic``), any other the authors' default (ViT) recipe (as :func:`weightlab.recast.reconstruct`);
    ``config.recipe`` on top."""
    from weightlab.models.families import mimicry_recipe
    from weightlab.recast.closed_form import closed_form
    from weightlab.recast.mimicry import MimicryConfig, run_recipe
    from weightlab.recast.problem import fidelity, role_weight

    settings = mimicry_recipe(model) if model is not None else {}
    settings.update({k: v for k, v in (config.recipe or {}).items() if v is not None})
    mcfg = MimicryConfig(**settings)

    problems = []
    gen = torch.Generator().manual_seed(config.seed)
    for p in plans:
        w = torch.stack([modules[m].weight.detach().reshape(-1).float().cpu() for m in p.modules])
        L, D, K = w.shape[0], w.shape[1], config.coef_sets
        templates = torch.empty(p.n, D)
        coefficients = torch.empty(L, K, p.n)
        if config.init == "recipe":  # the authors' init: Kaiming-normal templates, unit-vector coefficient sets
            for i in range(p.n):
                t = torch.empty(p.shape)
                t.normal_(0, 1, generator=gen).mul_(torch.nn.init.calculate_gain("relu") / max(_fan_in(t), 1) ** 0.5)
                templates[i] = t.reshape(-1)
            c = torch.randn(L, K, p.n, generator=gen)
            coefficients.copy_(c / c.norm(dim=-1, keepdim=True))
        problems.append(
            BankProblem(
                p.name,
                p.role,
                list(p.modules),
                templates,
                coefficients,
                w.contiguous(),
                loss_weight=role_weight(p.role, mcfg.role_weights),
            )
        )
    if config.init == "closed_form":
        closed_form(problems, seed=config.seed)
    else:
        run_recipe(problems, mcfg, seed=config.seed, progress=False)
    fidelity(problems)  # warns when the banks cannot reproduce the model's weights
    templates, base = {}, {}
    for plan, prob in zip(plans, problems):
        ref = modules[plan.modules[0]].weight
        templates[plan.name] = prob.templates.reshape(plan.n, *plan.shape).to(ref.device, ref.dtype)
        for i, m in enumerate(plan.modules):
            base[m] = prob.coefficients[i].clone()
    return templates, base


def _saved_plan(saved: list[dict], modules: dict[str, nn.Module]) -> list[BankPlan]:
    """The banks of a saved plan, checked against the model: every module there, templatable, of its shape."""
    plans = []
    for d in saved:
        plan = BankPlan(
            d["name"], d["stage"], int(d["group"]), d["role"], tuple(d["modules"]), tuple(d["shape"]), int(d["n"])
        )
        for m in plan.modules:
            module = modules.get(m)
            module = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            if not isinstance(module, SUPPORTED_TYPES) or tuple(module.weight.shape) != plan.shape:
                raise WeightlabError(
                    f"this model does not fit the adapter's bank plan: module '{m}' is missing, not a Linear / "
                    f"Conv2d, or not of shape {list(plan.shape)} (a different architecture?)"
                )
        plans.append(plan)
    return plans


def from_recast_model(recast_model: nn.Module, **config_fields) -> nn.Module:
    """A PEFT model made from a weightlab RECAST model (``apply_recast`` + ``reconstruct``, e.g. the authors'
    recipe): the same banks and templates, its coefficients as the ``default`` adapter. The base under the
    adapters is :func:`~weightlab.recast.materialize` of the model (its generated weights), so the PEFT model,
    with or without the adapter, computes what ``recast_model`` computes."""
    from peft import get_peft_model

    from weightlab.recast.tuner import bank_plans, banks, is_recast, materialize, recast_layers

    if not is_recast(recast_model):
        raise WeightlabError("from_recast_model needs a weightlab RECAST model (weightlab.recast.apply_recast)")
    plans = bank_plans(recast_model)
    layers = recast_layers(recast_model)
    bank_map = banks(recast_model)
    k = {tuple(layer.coefficients.shape)[0] for layer in layers.values()}
    templates = {p.name: bank_map[p.name].templates.detach().clone() for p in plans}
    coefficients = {m: layers[m].coefficients.detach().clone() for p in plans for m in p.modules}
    config = RecastConfig(
        target_modules=sorted(coefficients),
        coef_sets=k.pop(),
        bank_plan=[p.to_dict() for p in plans],
        init="recipe",  # the templates cannot be derived again from the base: they travel in their file
        **config_fields,
    )
    object.__setattr__(config, "_recast_given", (templates, coefficients))
    return get_peft_model(materialize(recast_model), config)


def _fan_in(t: torch.Tensor) -> int:
    return t[0].numel() if t.dim() > 1 else t.numel()


def _sha256(templates: dict[str, torch.Tensor], plans: list[BankPlan]) -> str:
    h = hashlib.sha256()
    for p in plans:
        t = templates[p.name].detach().float().cpu().contiguous()
        h.update(p.name.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _file_sha(path: str) -> str | None:
    """The templates hash a saved templates file records (None when there is no such file)."""
    if not os.path.isfile(path):
        return None
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return (f.metadata() or {}).get("sha256")


def _read_templates(path: str, plans: list[BankPlan], expected: str | None):
    tensors = load_weights(path)
    missing = [p.name for p in plans if f"templates.{p.name}" not in tensors]
    if missing:
        raise WeightlabError(f"{path}: no templates for bank(s) {', '.join(missing)}")
    templates = {p.name: tensors[f"templates.{p.name}"] for p in plans}
    for p in plans:  # checked now, not at the first forward
        t = templates[p.name]
        if not t.is_floating_point() or tuple(t.shape) != (p.n, *p.shape):
            raise WeightlabError(
                f"{path}: templates of bank '{p.name}' are {str(t.dtype).replace('torch.', '')} "
                f"{list(t.shape)}, the plan needs floating-point {[p.n, *p.shape]}"
            )
    if expected is not None and _sha256(templates, plans) != expected:
        raise WeightlabError(f"{path}: the templates do not match the adapter's templates_sha256")
    base = {
        m: tensors[f"base_coefficients.{m}"] for p in plans for m in p.modules if f"base_coefficients.{m}" in tensors
    }
    if len(base) != sum(len(p.modules) for p in plans):
        raise WeightlabError(f"{path}: base coefficients are missing")
    for p in plans:
        for m in p.modules:
            c = base[m]
            if not c.is_floating_point() or c.dim() != 2 or c.shape[1] != p.n:
                raise WeightlabError(
                    f"{path}: base coefficients of '{m}' are {str(c.dtype).replace('torch.', '')} {list(c.shape)}, "
                    f"the plan needs floating-point [K, {p.n}]"
                )
    return templates, base
