"""Reconstruction quality and template analysis (paper Sec. 2.2, Table 6, App. A.3)."""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from weightlab.engine.loop import module_device
from weightlab.errors import WeightlabError
from weightlab.recast.tuner import bank_plans, banks, recast_layers


@torch.no_grad()
def weight_report(original: nn.Module, recast_model: nn.Module) -> list[dict]:
    """Per templated module: cosine similarity and relative error of generated vs original weight."""
    originals = dict(original.named_modules())
    rows = []
    for name, layer in recast_layers(recast_model).items():
        w = originals[name].weight.detach().double().flatten()
        g = layer.generate_weight().detach().to(w.device).double().flatten()
        rows.append(
            dict(
                module=name,
                shape=list(layer.bank.shape),
                n=layer.bank.n,
                weight_cosine=float(F.cosine_similarity(w, g, dim=0)),
                relative_error=float((g - w).norm() / w.norm().clamp_min(1e-30)),
            )
        )
    return rows


@torch.no_grad()
def output_tensor(out) -> torch.Tensor:
    """The tensor a model's output stands for: itself; a Hugging Face output's ``logits``, else its
    ``last_hidden_state``, ``pooler_output`` or first tensor; a tuple's or dict's first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state", "pooler_output"):
        value = out.get(key) if isinstance(out, dict) else getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    values = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else []
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    raise WeightlabError(f"cannot compare a model output of type {type(out).__name__}: no tensor in it")


def _on(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on ``model``'s device."""
    return x.to(module_device(model))


@torch.no_grad()
def feature_cosine(original: nn.Module, recast_model: nn.Module, x: torch.Tensor) -> list[dict]:
    """Layer-wise feature cosine on a batch: the output of every templated module and the logits,
    cosine per sample (flattened), averaged over the batch."""
    names = list(recast_layers(recast_model))
    feats: dict[str, dict[str, torch.Tensor]] = {"orig": {}, "recon": {}}

    def hook(store, name):
        return lambda _m, _i, out: store.__setitem__(name, output_tensor(out).detach())

    handles = []
    for tag, model in (("orig", original), ("recon", recast_model)):
        mods = dict(model.named_modules())
        handles += [mods[n].register_forward_hook(hook(feats[tag], n)) for n in names]
    was = (original.training, recast_model.training)
    original.eval(), recast_model.eval()
    try:
        feats["orig"]["logits"] = output_tensor(original(_on(original, x)))
        feats["recon"]["logits"] = output_tensor(recast_model(_on(recast_model, x)))
    finally:
        for h in handles:
            h.remove()
        original.train(was[0]), recast_model.train(was[1])
    return [
        dict(
            module=n,
            feature_cosine=float(
                F.cosine_similarity(
                    feats["orig"][n].flatten(1).double(), feats["recon"][n].flatten(1).double(), dim=1
                ).mean()
            ),
        )
        for n in names + ["logits"]
    ]


@torch.no_grad()
def output_fidelity(
    original: nn.Module,
    recast_model: nn.Module,
    inputs,
    *,
    accuracy: bool = False,
    progress: bool = False,
    total: int | None = None,
    desc: str = "output fidelity",
) -> dict:
    """How closely the RECAST model's outputs follow the original's on real inputs (``inputs``: batches,
    or ``(x, y)`` pairs): the share of inputs (%) whose top-1 class agrees, and the mean cosine of the
    outputs (logits, or the last hidden state). Weight cosine alone can read 0.7 where the outputs have
    collapsed: this is the number to read first. With ``accuracy`` and labelled batches, also both models'
    top-1 accuracy (%) from the same pass (``top1_original``, ``top1_reconstructed``); ``progress``: a bar
    over the ``total`` batches."""
    from tqdm.auto import tqdm

    was = (original.training, recast_model.training)
    original.eval(), recast_model.eval()
    agree = count = right_a = right_b = 0
    cos, classes = 0.0, True  # top-1 agreement only for (batch, classes) outputs
    try:
        for batch in tqdm(inputs, total=total, desc=desc, disable=not progress, leave=False):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            a = output_tensor(original(_on(original, x))).double()
            b = output_tensor(recast_model(_on(recast_model, x))).to(a.device).double()
            classes = classes and a.dim() == 2
            if classes:
                pa, pb = a.argmax(-1), b.argmax(-1)
                agree += int((pa == pb).sum())
                if accuracy and isinstance(batch, (tuple, list)):
                    y = batch[1].to(a.device)
                    right_a, right_b = right_a + int((pa == y).sum()), right_b + int((pb == y).sum())
            cos += float(F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1).sum())
            count += a.shape[0]
    finally:
        original.train(was[0]), recast_model.train(was[1])
    if count == 0:
        raise WeightlabError("output_fidelity: no inputs")
    out = dict(
        top1_agreement=100.0 * agree / count if agree or a.dim() == 2 else None, output_cosine=cos / count, n=count
    )
    if accuracy:
        out["top1_original"] = 100.0 * right_a / count if classes else None
        out["top1_reconstructed"] = 100.0 * right_b / count if classes else None
    return out


#: below these, a report warns that the outputs do not follow the original's
FIDELITY_WARN = dict(top1_agreement=90.0, output_cosine=0.99)


def template_diversity(templates: torch.Tensor) -> float:
    """The paper's group Frobenius diversity: 1/(n(n-1)) sum_{i<j} ||T_i - T_j||_F (0 when n = 1)."""
    n = templates.shape[0]
    if n < 2:
        return 0.0
    flat = templates.detach().double().flatten(1)
    total = sum(float((flat[i] - flat[j]).norm()) for i, j in combinations(range(n), 2))
    return total / (n * (n - 1))


def singular_value_entropy(template: torch.Tensor) -> float:
    """Shannon entropy of the normalised singular values of one template (reshaped to out x rest)."""
    m = template.detach().double().reshape(template.shape[0], -1)
    s = torch.linalg.svdvals(m)
    p = s / s.sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def coefficient_similarity(recast_model: nn.Module) -> dict[str, list[list[float]]]:
    """Intra-group coefficient cosine similarity: per (stage, group), the cosine between layers'
    flattened-and-concatenated coefficients (all roles of the layer in that group)."""
    layers = recast_layers(recast_model)
    per_group: dict[str, dict[int, list[torch.Tensor]]] = {}
    for plan in bank_plans(recast_model):
        gkey = f"{plan.stage or 'model'}.g{plan.group}"
        for name in plan.modules:
            idx = int(name[len(plan.stage) + 1 if plan.stage else 0 :].split(".")[0])  # the number after the stage
            per_group.setdefault(gkey, {}).setdefault(idx, []).append(layers[name].coefficients.detach().flatten())
    out = {}
    for gkey, by_layer in per_group.items():
        vecs = [torch.cat(v).double() for _, v in sorted(by_layer.items())]
        if len({v.numel() for v in vecs}) > 1:
            continue
        M = torch.stack(vecs)
        M = M / M.norm(dim=1, keepdim=True).clamp_min(1e-30)
        out[gkey] = (M @ M.T).tolist()
    return out


def bank_analysis(recast_model: nn.Module) -> list[dict]:
    """Per bank: template Frobenius diversity, mean singular-value entropy, mean off-diagonal
    intra-group coefficient cosine."""
    bank_map = banks(recast_model)
    sims = coefficient_similarity(recast_model)
    rows = []
    for plan in bank_plans(recast_model):
        t = bank_map[plan.name].templates
        gkey = f"{plan.stage or 'model'}.g{plan.group}"
        sim = sims.get(gkey)
        off = [sim[i][j] for i in range(len(sim)) for j in range(len(sim)) if i != j] if sim else []
        rows.append(
            dict(
                bank=plan.name,
                stage=plan.stage,
                group=plan.group,
                role=plan.role,
                n=plan.n,
                layers=len(plan.modules),
                frobenius_diversity=template_diversity(t),
                sv_entropy=sum(singular_value_entropy(x) for x in t) / t.shape[0],
                coef_similarity=(sum(off) / len(off)) if off else math.nan,
            )
        )
    return rows
