"""Save and load a RECAST model: ``model.safetensors`` (every tensor) + ``recast_config.json``
(model spec, RECAST config, bank plan). Loading rebuilds the architecture from the model spec,
re-applies the config, checks the plan is the same and loads the tensors -- no pickle anywhere."""

from __future__ import annotations

from pathlib import Path

from torch import nn

import weightlab
from weightlab.errors import WeightlabError
from weightlab.io import damaged, load_weights, read_json, save_tensors, write_json
from weightlab.models import attach_cfg, load_state_dict_strict, rebuild_model
from weightlab.recast.config import RecastConfig
from weightlab.recast.tuner import apply_recast, bank_plans, is_recast

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "recast_config.json"
HF_CONFIG_FILE = "hf_config.json"  # a Hugging Face model's config, saved beside it to rebuild the architecture
FORMAT = "weightlab.recast/1"


def save_recast(model: nn.Module, directory: str | Path, extra: dict | None = None) -> Path:
    if not is_recast(model):
        raise WeightlabError("save_recast needs a RECAST model (apply_recast first)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / WEIGHTS_FILE, model.state_dict(), metadata={"format": FORMAT})
    hf = _hf_spec(model)
    if hf is not None:
        write_json(directory / HF_CONFIG_FILE, hf["config"])
    write_json(
        directory / CONFIG_FILE,
        dict(
            format=FORMAT,
            weightlab_version=weightlab.__version__,
            model=model.weightlab_cfg.to_dict() if getattr(model, "weightlab_cfg", None) is not None else None,
            recast=model.recast_config.to_dict(),
            plan=[p.to_dict() for p in bank_plans(model)],
            hf_class=hf["class"] if hf is not None else None,
            **(extra or {}),
        ),
    )
    return directory


def load_recast(directory: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved RECAST model. Pass ``model`` (the plain architecture) for models that are
    not in weightlab's zoo (it is copied, not changed); otherwise it is rebuilt from the saved model spec."""
    directory = Path(directory)
    meta = read_json(directory / CONFIG_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise WeightlabError(f"{directory / CONFIG_FILE}: not a weightlab RECAST config (format {found!r})")
    with damaged(directory / CONFIG_FILE, "RECAST config"):
        return _load_recast(directory, meta, model)


def _load_recast(directory: Path, meta: dict, model: nn.Module | None) -> nn.Module:
    given = model is not None
    if model is None:
        if meta.get("hf_class"):
            model = _rebuild_hf(directory, meta["hf_class"])
        elif not meta.get("model"):
            raise WeightlabError(
                f"{directory}: the model is neither a weightlab / timm / torchvision model nor a Hugging Face "
                "model, so its architecture was not saved; pass it: load_recast(directory, model=<the plain "
                "architecture>)"
            )
        else:
            model = rebuild_model(meta["model"])
    config = RecastConfig.from_dict(meta["recast"])
    recast_model = apply_recast(model, config, inplace=not given)
    plan = [p.to_dict() for p in bank_plans(recast_model)]
    if plan != meta["plan"]:
        raise WeightlabError(f"{directory}: the model does not give the saved bank plan (different architecture?)")
    load_state_dict_strict(recast_model, load_weights(directory / WEIGHTS_FILE), source=str(directory / WEIGHTS_FILE))
    if meta.get("model"):
        attach_cfg(recast_model, meta["model"])
    return recast_model


def _hf_spec(model: nn.Module) -> dict | None:
    """A transformers model's class name and config (its architecture, nothing else), else None."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not type(model).__module__.startswith("transformers."):
        return None
    return {"class": type(model).__name__, "config": config.to_dict()}


def _rebuild_hf(directory: Path, class_name: str) -> nn.Module:
    """The transformers architecture ``class_name`` from the config saved beside the weights (random
    init; the saved tensors are loaded next). The class is looked up by name in ``transformers``."""
    try:
        import transformers
    except ImportError:
        raise WeightlabError(f"{directory}: a Hugging Face model; install transformers to load it") from None
    cls = getattr(transformers, class_name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, transformers.PreTrainedModel):
        raise WeightlabError(f"{directory}: '{class_name}' is not a transformers model class")
    config_dict = read_json(directory / HF_CONFIG_FILE)
    config = transformers.AutoConfig.for_model(**config_dict)
    return cls(config)
