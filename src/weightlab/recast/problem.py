"""Neural Mimicry as a set of per-bank regression problems in weight space.

For a bank with templates T (n, D) and L layers with coefficients C (L, K, n), the generated
weights are A T with A = mean_k C (L, n); the targets are the pretrained weights W (L, D).
Both mimicry engines and the closed form work on this flat view and write back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from weightlab.errors import WeightlabError, WeightlabWarning
from weightlab.recast.tuner import bank_plans, banks, recast_layers


@dataclass
class BankProblem:
    name: str
    role: str
    modules: list[str]
    templates: torch.Tensor  # (n, D) float32, a view of the bank's parameter data
    coefficients: torch.Tensor  # (L, K, n) float32, a stacked copy
    targets: torch.Tensor  # (L, D) float32
    loss_weight: float = 1.0

    def on(self, device: torch.device) -> BankProblem:
        """The same problem with its tensors on ``device`` (itself when they are there already)."""
        if self.targets.device == device:
            return self
        move = lambda t: torch.empty_like(t, device=device).copy_(t)  # noqa: E731
        return replace(
            self, templates=move(self.templates), coefficients=move(self.coefficients), targets=move(self.targets)
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(L, K, n, D)"""
        L, K, n = self.coefficients.shape
        return L, K, n, self.targets.shape[1]


#: a base whose generated weights miss the pretrained ones by more than this (relative Frobenius error of a
#: bank) does not start from the pretrained function: building it warns (e.g. one template per bank)
FIDELITY_WARN = 0.05


def fidelity(problems: list[BankProblem]) -> dict:
    """How closely the fitted banks reproduce the pretrained weights: each bank's relative error
    ‖W − A T‖ / ‖W‖ (A the mean coefficient set), the overall one, and the worst bank. Warns (a
    :class:`UserWarning` naming the worst bank) above :data:`FIDELITY_WARN`."""
    import warnings

    per = {}
    num = den = 0.0
    for p in problems:
        gen = p.coefficients.mean(1) @ p.templates
        err = float((p.targets - gen).double().norm() ** 2)
        ref = float(p.targets.double().norm() ** 2)
        per[p.name] = (err / ref) ** 0.5 if ref > 0 else 0.0
        num, den = num + err, den + ref
    worst = max(per, key=per.get) if per else None
    out = {"relative_error": (num / den) ** 0.5 if den > 0 else 0.0, "per_bank": per, "worst_bank": worst}
    if worst is not None and per[worst] > FIDELITY_WARN:
        bank = next(p for p in problems if p.name == worst)
        # as many templates as layers: the closed form is exact, so an error is the iterative fit's
        exact = bank.templates.shape[0] >= bank.targets.shape[0]
        remedy = (
            "the closed form (method closed_form) reproduces these banks exactly; the recipe needs more iterations"
            if exact
            else "more templates per bank fit it better"
        )
        warnings.warn(
            f"the RECAST base does not reproduce the pretrained weights: relative error {out['relative_error']:.3f} "
            f"overall, {per[worst]:.3f} in bank '{worst}' (above {FIDELITY_WARN}); the adapted model will not start "
            f"from the pretrained model's function ({remedy})",
            WeightlabWarning,
            stacklevel=3,
        )
    return out


def target_weights(original: nn.Module, recast_model: nn.Module) -> dict[str, torch.Tensor]:
    """The original weights of every module the RECAST model templates, checked for shape."""
    originals = dict(original.named_modules())
    out = {}
    for name, layer in recast_layers(recast_model).items():
        if name not in originals or not hasattr(originals[name], "weight"):
            raise WeightlabError(f"original model has no module '{name}' with a weight")
        w = originals[name].weight.detach()
        if tuple(w.shape) != layer.bank.shape:
            raise WeightlabError(
                f"original weight of '{name}' has shape {list(w.shape)}, the bank {list(layer.bank.shape)}"
            )
        out[name] = w
    return out


#: the MLP's two projections under other naming schemes (the role is the module name after the layer
#: index): Hugging Face BERT/RoBERTa/ViT v4, LLaMA-style, GPT-2. Only a whole role matches these, so BERT's
#: ``attention.output.dense`` (the attention's output projection) is not taken for ``output.dense``.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "fc1": ("intermediate.dense", "mlp.up_proj", "mlp.c_fc"),
    "fc2": ("output.dense", "mlp.down_proj", "mlp.c_proj"),
}


def role_weight(role: str, weights: dict[str, float]) -> float:
    """Per-role loss weight: the longest key that ``role`` ends with (``mlp.fc1`` -> 2.0); a key with
    aliases in :data:`ROLE_ALIASES` also weighs those roles (``intermediate.dense`` -> the ``fc1`` weight)."""
    best = None
    for key in weights:
        alias = role in ROLE_ALIASES.get(key, ())
        if alias or role == key or role.endswith("." + key) or role.endswith(key):
            if best is None or len(key) > len(best):
                best = key
    return float(weights[best]) if best is not None else 1.0


def build_problems(
    recast_model: nn.Module, targets: dict[str, torch.Tensor], role_weights: dict[str, float] | None = None
) -> list[BankProblem]:
    layers = recast_layers(recast_model)
    bank_map = banks(recast_model)
    problems = []
    for plan in bank_plans(recast_model):
        missing = [m for m in plan.modules if m not in targets]
        if missing:
            raise WeightlabError(f"no target weight for module(s) {', '.join(missing)}")
        t = bank_map[plan.name].templates
        problems.append(
            BankProblem(
                name=plan.name,
                role=plan.role,
                modules=list(plan.modules),
                templates=t.detach().reshape(t.shape[0], -1).float().clone(),
                coefficients=torch.stack([layers[m].coefficients.detach().float() for m in plan.modules]).clone(),
                targets=torch.stack([targets[m].detach().reshape(-1).float() for m in plan.modules]).contiguous(),
                loss_weight=role_weight(plan.role, role_weights or {}),
            )
        )
    return problems


@torch.no_grad()
def write_back(recast_model: nn.Module, problems: list[BankProblem]) -> None:
    layers = recast_layers(recast_model)
    bank_map = banks(recast_model)
    for p in problems:
        t = bank_map[p.name].templates
        t.copy_(p.templates.reshape(t.shape).to(t.dtype))
        for i, m in enumerate(p.modules):
            layers[m].coefficients.copy_(p.coefficients[i].to(layers[m].coefficients.dtype))
