"""Save and load a RECAST model: ``model.safetensors`` (every tensor) + ``recast_config.json``
(model spec, RECAST config, bank plan). Loading rebuilds the architecture from the model spec,
re-applies the config, checks the plan is the same and loads the tensors -- no pickle anywhere."""

from __future__ import annotations

from pathlib import Path

from torch import nn

import weightlab
from weightlab.errors import WeightlabError
from weightlab.io import load_weights, read_json, save_tensors, write_json
from weightlab.models import attach_cfg, load_state_dict_strict, rebuild_model
from weightlab.recast.config import RecastConfig
from weightlab.recast.tuner import apply_recast, bank_plans, is_recast

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "recast_config.json"
FORMAT = "weightlab.recast/1"


def save_recast(model: nn.Module, directory: str | Path, extra: dict | None = None) -> Path:
    if not is_recast(model):
        raise WeightlabError("save_recast needs a RECAST model (apply_recast first)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS_FILE, model.state_dict(), metadata={"format": FORMAT})
    write_json(
        directory / CONFIG_FILE,
        dict(
            format=FORMAT,
            weightlab_version=weightlab.__version__,
            model=model.weightlab_cfg.to_dict() if getattr(model, "weightlab_cfg", None) is not None else None,
            recast=model.recast_config.to_dict(),
            plan=[p.to_dict() for p in bank_plans(model)],
            **(extra or {}),
        ),
    )
    return directory


def load_recast(directory: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved RECAST model. Pass ``model`` (the plain architecture) for models that are
    not in weightlab's zoo; otherwise it is rebuilt from the saved model spec."""
    directory = Path(directory)
    meta = read_json(directory / CONFIG_FILE)
    if meta.get("format") != FORMAT:
        raise WeightlabError(
            f"{directory / CONFIG_FILE}: not a weightlab RECAST config (format {meta.get('format')!r})"
        )
    if model is None:
        if not meta.get("model"):
            raise WeightlabError(
                f"{directory}: no model spec saved; pass the base model to load_recast(..., model=...)"
            )
        model = rebuild_model(meta["model"])
    config = RecastConfig.from_dict(meta["recast"])
    recast_model = apply_recast(model, config, inplace=True)
    plan = [p.to_dict() for p in bank_plans(recast_model)]
    if plan != meta["plan"]:
        raise WeightlabError(f"{directory}: the model does not give the saved bank plan (different architecture?)")
    load_state_dict_strict(recast_model, load_weights(directory / WEIGHTS_FILE), source=str(directory / WEIGHTS_FILE))
    if meta.get("model"):
        attach_cfg(recast_model, meta["model"])
    return recast_model
