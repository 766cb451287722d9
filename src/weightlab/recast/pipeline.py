"""The end-to-end mimicry job behind ``weightlab recast mimic`` and the quickstart, and the RECAST base
a task-incremental run starts from."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from weightlab.data import ImageArrays
from weightlab.errors import WeightlabError
from weightlab.models import create_model, get_family, model_cfg
from weightlab.recast.architectures import config_for_model
from weightlab.recast.config import RecastConfig
from weightlab.recast.gauge import match_template_scale
from weightlab.recast.mimicry import MimicryConfig, reconstruct
from weightlab.recast.report import build_report, write_report
from weightlab.recast.serialization import save_recast
from weightlab.recast.tuner import apply_recast


def run_mimicry(
    original: nn.Module,
    config: RecastConfig,
    mimicry: MimicryConfig,
    *,
    method: str,
    model_name: str,
    out_dir: str | Path | None,
    test_data: ImageArrays | None = None,
    feature_samples: int = 64,
    seed: int = 0,
    progress: bool = True,
    stem: str = "report",
    device: str | None = None,
) -> tuple[nn.Module, dict]:
    """Wrap ``original``, reconstruct it with ``method`` (the fit on ``device``), evaluate (where the
    model is), and write the report + model."""
    original.eval()
    recast_model = apply_recast(original, config, seed=seed)
    result = reconstruct(original, recast_model, method, mimicry, seed=seed, progress=progress, device=device)
    recast_model.eval()
    batch = None
    if test_data is not None and getattr(original, "weightlab_cfg", None):
        from weightlab.engine import module_device, to_device

        batch = next(
            to_device(
                test_data.head(feature_samples, seed).batches(feature_samples, original.weightlab_cfg),
                module_device(original),
            )
        )[0]
    report = build_report(
        original,
        recast_model,
        result,
        model_name=model_name,
        test_data=test_data,
        feature_batch=batch,
        progress=progress,
    )
    report["mimicry_config"] = mimicry.to_dict()
    if out_dir is not None:
        write_report(report, out_dir, stem)
        save_recast(recast_model, Path(out_dir) / f"{stem}_model" if stem != "report" else Path(out_dir) / "model")
    return recast_model, report


#: How a RECAST base is fitted to the pretrained weights (a suite's ``recast`` overrides take ``base``):
#: the exact closed form; the authors' iterative recipe (their family's settings) from the random init;
#: the closed form re-gauged to the recipe's template scale (the same weights as the closed form, the
#: recipe's template norms; see :mod:`weightlab.recast.gauge`).
BASES = ("closed_form", "recipe", "regauged")


def recast_base(
    plain: nn.Module, recast_overrides: dict, *, seed: int = 0, device: str | None = None, base: str | None = None
) -> nn.Module:
    """The model family's RECAST preset (with overrides) applied to ``plain`` and fitted by ``base``
    (default: ``recast_overrides["base"]``, else the closed form) on ``device``; it carries ``plain``'s
    model configuration (``apply_recast`` copies the model)."""
    overrides = dict(recast_overrides)
    base = base or overrides.pop("base", None) or "closed_form"
    overrides.pop("base", None)
    if base not in BASES:
        raise WeightlabError(f"unknown RECAST base '{base}' (use one of {', '.join(BASES)})")
    cfg = model_cfg(plain, "recast_base")
    family = get_family(cfg)
    config, _ = config_for_model(plain, **overrides)
    rmodel = apply_recast(plain, config, seed=seed)
    if base == "closed_form":
        reconstruct(plain, rmodel, method="closed_form", progress=False, device=device)
        return rmodel
    recipe = MimicryConfig.for_family(family)
    if base == "recipe":
        reconstruct(plain, rmodel, method="recipe", config=recipe, seed=seed, progress=False, device=device)
        return rmodel
    reference = apply_recast(plain, config, seed=seed)
    reconstruct(plain, reference, method="recipe", config=recipe, seed=seed, progress=False, device=device)
    reconstruct(plain, rmodel, method="closed_form", progress=False, device=device)
    match_template_scale(rmodel, reference)
    return rmodel


def build_bases(
    model_name: str,
    weights: str | None,
    recast_overrides: dict,
    *,
    need_recast: bool,
    seed: int = 0,
    pretrained: bool = True,
    model_kwargs: dict | None = None,
    device: str | None = None,
):
    """(plain pretrained model, RECAST base reconstructed in closed form (on ``device``) or None); both
    on the CPU, where a task model copies them from. The model is created under ``seed``."""
    import torch

    # seeded here: a model that is not pretrained (or keeps a fresh head) is the same in every process and
    # on every resume, whatever ran before
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plain = create_model(
            model_name, pretrained=pretrained and weights is None, weights=weights, **(model_kwargs or {})
        )
    return plain, (recast_base(plain, recast_overrides, seed=seed, device=device) if need_recast else None)
