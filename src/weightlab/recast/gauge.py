"""The gauge of a RECAST fit: templates and coefficients are fixed only up to an invertible map.

A bank's generated weights are A T (A = the mean of each layer's K coefficient sets, (L, n); T the
templates, (n, D)). For any invertible n x n matrix M, templates M T with coefficient sets C M^-1 give
exactly the same weights, so the same model. The closed form fixes the gauge so that every template has
the norm of an average layer; the authors' recipe ends wherever RMSprop from a Kaiming init takes it
(on the CIFAR ResNets ~3-5x larger templates, ~3-5x smaller coefficients). The gauge does not change the
model, but it changes adaptation: an Adam step moves a coefficient by about the learning rate whatever
its scale, so the weight moves in proportion to the template norm. Re-gauging the closed form to the
recipe's template scale (:func:`match_template_scale`) separates "which solution" from "which scale".
"""

from __future__ import annotations

import torch
from torch import nn

from weightlab.errors import WeightlabError
from weightlab.recast.tuner import bank_plans, banks, recast_layers


@torch.no_grad()
def regauge(model: nn.Module, maps: dict[str, torch.Tensor | float]) -> None:
    """Apply the change of basis ``maps[bank]`` (an invertible (n, n) matrix, or a scalar for ``s * I``)
    to the named banks in place: templates ``M T``, every coefficient set ``c M^-1``. Every generated
    weight is unchanged (up to float rounding)."""
    layers = recast_layers(model)
    bank_map = banks(model)
    plans = {p.name: p for p in bank_plans(model)}
    for name, m in maps.items():
        if name not in bank_map:
            raise WeightlabError(f"no template bank '{name}' to re-gauge (banks: {', '.join(bank_map)})")
        t = bank_map[name].templates
        n = t.shape[0]
        M = torch.as_tensor(m, dtype=torch.float64)
        M = M * torch.eye(n, dtype=torch.float64) if M.dim() == 0 else M
        if tuple(M.shape) != (n, n):
            raise WeightlabError(f"bank '{name}' has {n} templates: its gauge map must be {n}x{n}, got {list(M.shape)}")
        if torch.linalg.matrix_rank(M) < n:
            raise WeightlabError(f"the gauge map of bank '{name}' is singular")
        Minv = torch.linalg.inv(M)
        flat = t.reshape(n, -1)
        t.copy_((M.to(t.device) @ flat.double()).reshape(t.shape).to(t.dtype))
        for module in plans[name].modules:
            c = layers[module].coefficients
            c.copy_((c.double() @ Minv.to(c.device)).to(c.dtype))


def template_scale(model: nn.Module) -> dict[str, float]:
    """Per bank: the RMS Frobenius norm of its templates."""
    return {name: float(b.templates.detach().double().pow(2).sum().div(b.n).sqrt()) for name, b in banks(model).items()}


def match_template_scale(model: nn.Module, reference: nn.Module) -> dict[str, float]:
    """Re-gauge ``model`` (in place) with one scalar per bank so that its templates have the RMS norm of
    ``reference``'s (the same RECAST structure, e.g. the recipe's fit); returns the factors applied."""
    mine, theirs = template_scale(model), template_scale(reference)
    if set(mine) != set(theirs):
        raise WeightlabError("re-gauging needs two RECAST models with the same banks")
    factors = {name: theirs[name] / mine[name] for name in mine if mine[name] > 0}
    regauge(model, factors)
    return factors


__all__ = ["regauge", "template_scale", "match_template_scale"]
