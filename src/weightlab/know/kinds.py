"""Which kind each state-dict entry is, so every predictor can say what it touches.

Kinds: ``conv`` (weights of more than 2 dims), ``fc`` (2-D weights), ``bias`` (biases of convs and
linears), ``norm`` (affine parameters of BatchNorm/LayerNorm/GroupNorm), ``head`` (the classifier's
weight and bias, replaced anyway when transferring), ``other`` (any other parameter, e.g. position
embeddings) and ``buffer`` (running statistics and counters: never predicted).
"""

from __future__ import annotations

from torch import nn

from weightlab.errors import WeightlabError

KINDS = ("conv", "fc", "bias", "norm", "head", "other", "buffer")
PREDICTABLE = ("conv", "fc", "bias", "norm", "head", "other")
DEFAULT_KINDS = ("conv", "fc", "bias", "head")  # the KNOWN paper's choice: BatchNorm is not predicted
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_kinds(model: nn.Module) -> dict[str, str]:
    """The kind of every entry of ``model.state_dict()``."""
    from weightlab.models import find_classifier

    try:
        head_name, _ = find_classifier(model)
    except WeightlabError:
        head_name = None
    kinds: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, p in module.named_parameters(recurse=False):
            key = prefix + p_name
            if mod_name == head_name and head_name is not None:
                kinds[key] = "head"
            elif isinstance(module, _NORMS):
                kinds[key] = "norm"
            elif isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                kinds[key] = "bias" if p_name == "bias" else ("conv" if p.ndim > 2 else "fc")
            else:
                kinds[key] = "other"
        for b_name, _ in module.named_buffers(recurse=False):
            kinds[prefix + b_name] = "buffer"
    state_keys = set(model.state_dict())
    return {k: v for k, v in kinds.items() if k in state_keys}


def guess_kinds(state: dict) -> dict[str, str]:
    """Kinds from names and shapes alone, for a bare state dict without its model."""
    kinds = {}
    for k, v in state.items():
        leaf = k.rsplit(".", 1)[-1]
        low = k.lower()
        if not v.is_floating_point() or leaf.startswith("running_") or leaf == "num_batches_tracked":
            kinds[k] = "buffer"
        elif any(t in low for t in ("bn", "norm", "ln_", ".ln")) and v.ndim == 1:
            kinds[k] = "norm"
        elif v.ndim > 2:
            kinds[k] = "conv"
        elif v.ndim == 2:
            kinds[k] = "fc"
        elif v.ndim == 1 and leaf == "bias":
            kinds[k] = "bias"
        else:
            kinds[k] = "other"
    return kinds


def parse_kinds(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"conv,fc,bias"`` → a validated tuple; ``None`` gives :data:`DEFAULT_KINDS`."""
    if spec is None:
        return DEFAULT_KINDS
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in items if s not in PREDICTABLE]
    if bad or not items:
        raise WeightlabError(
            f"unknown parameter kind(s) {', '.join(bad) or '(none given)'} "
            f"(use a comma-separated subset of {', '.join(PREDICTABLE)})"
        )
    return tuple(dict.fromkeys(items))
