"""Controls for KNOW's transfer tables: changes to Θ⁰ that should *not* help if a prediction's gain is
real, and the comparison with the weight a prediction is trying to reach.

The **shrink control** rescales every weight that feeds a BatchNorm by a factor ``c`` and the BatchNorm's
running statistics with it (mean ×c, variance ×c²). The network computes the same function (exactly, up
to BatchNorm's ε), so its only effect on fine-tuning is the effective learning rate of those weights
(a smaller norm moves further per step). A predictor that mostly shrinks such weights (the authors' raw
KNOWN is ≈ 0.82·θ on the shared ResNet-20) must beat the shrink control with its own factor
(:func:`shrink_factor`) before its gain can be put down to knowledge.
"""

from __future__ import annotations

import torch
from torch import nn

from weightlab.errors import WeightlabError

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` module names for every Conv / Linear whose output goes straight into a
    BatchNorm (read from the traced graph, not guessed from names)."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # fx raises many types on data-dependent control flow
        raise WeightlabError(f"cannot trace {type(model).__name__} to find its conv -> BatchNorm pairs ({e})") from None
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _NORMS):
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
            and len(src.users) == 1  # the layer's output feeds only this BatchNorm
        ):
            pairs.append((src.target, node.target))
    return pairs


def shrink_factor(theta0: dict[str, torch.Tensor], predicted: dict[str, torch.Tensor], keys: list[str]) -> float:
    """The least-squares scale ``c`` with ``predicted ≈ c·θ⁰`` over ``keys`` (a prediction's shrink)."""
    num = sum(float((predicted[k].double() * theta0[k].double()).sum()) for k in keys)
    den = sum(float(theta0[k].double().pow(2).sum()) for k in keys)
    if den == 0:
        raise WeightlabError("shrink factor: the weights are all zero")
    return num / den


def rescale_control(
    model: nn.Module, state: dict[str, torch.Tensor], factor: float
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` (of ``model``'s architecture) with every BatchNorm-fed weight (and bias) scaled by
    ``factor`` and the BatchNorms' running mean and variance by ``factor`` and ``factor²``: the same
    function. Returns the new state and the weight keys that were scaled."""
    if factor <= 0:
        raise WeightlabError(f"the rescale factor must be > 0, got {factor}")
    pairs = bn_pairs(model)
    if not pairs:
        raise WeightlabError(f"{type(model).__name__} has no layer feeding a BatchNorm: the shrink control needs one")
    out = {k: v.detach().clone() for k, v in state.items()}
    scaled = []
    for layer, bn in pairs:
        for key in (f"{layer}.weight", f"{layer}.bias"):
            if key in out:
                out[key] = out[key] * factor
                scaled.append(key)
        out[f"{bn}.running_mean"] = out[f"{bn}.running_mean"] * factor
        out[f"{bn}.running_var"] = out[f"{bn}.running_var"] * factor**2
    return out, [k for k in scaled if k.endswith(".weight")]


def weight_space_comparison(
    theta0: dict[str, torch.Tensor],
    candidates: dict[str, dict[str, torch.Tensor]],
    truth: dict[str, torch.Tensor],
    keys: list[str],
) -> dict[str, dict[str, float]]:
    """How close each candidate Θ̂ (a prediction of Θ⁻¹, or Θ¹ as a reference) comes to the real
    larger-data weight Θ⁻¹ (``truth``), on the weights ``keys`` (conv / linear, not the head), the
    paper's Fig. 3 claim measured:

    - ``cosine``: the mean over output channels of cos(Θ̂ − Θ⁰, Θ⁻¹ − Θ⁰), per channel (row of the
      weight): +1 when the candidate moves every channel in the true direction, 0 when unrelated;
    - ``distance``: ‖Θ̂ − Θ⁻¹‖ and ``relative_distance`` = ‖Θ̂ − Θ⁻¹‖ / ‖Θ⁰ − Θ⁻¹‖ (< 1: closer to the
      truth than Θ⁰ is);
    - ``step``: ‖Θ̂ − Θ⁰‖ / ‖Θ⁻¹ − Θ⁰‖ (how far the candidate moves, against how far the truth is).
    """
    if not keys:
        raise WeightlabError("weight-space comparison: no weights to compare")
    out = {}
    true_delta = {k: (truth[k].double() - theta0[k].double()).flatten(1) for k in keys}
    ref = sum(float(d.pow(2).sum()) for d in true_delta.values()) ** 0.5
    if ref == 0:
        raise WeightlabError("weight-space comparison: the larger-data weight equals Θ⁰")
    for name, cand in candidates.items():
        missing = [k for k in keys if k not in cand]
        if missing:
            raise WeightlabError(f"weight-space comparison: {name} lacks {', '.join(missing[:3])}")
        cos, dist2, step2 = [], 0.0, 0.0
        for k in keys:
            delta = (cand[k].double() - theta0[k].double()).flatten(1)
            norms = delta.norm(dim=1) * true_delta[k].norm(dim=1)
            ok = norms > 0
            cos.append((delta * true_delta[k]).sum(1)[ok] / norms[ok])
            dist2 += float((cand[k].double() - truth[k].double()).pow(2).sum())
            step2 += float(delta.pow(2).sum())
        c = torch.cat(cos)
        out[name] = {
            "cosine": float(c.mean()) if len(c) else 0.0,
            "distance": dist2**0.5,
            "relative_distance": dist2**0.5 / ref,
            "step": step2**0.5 / ref,
        }
    return out


__all__ = ["bn_pairs", "rescale_control", "shrink_factor", "weight_space_comparison"]
