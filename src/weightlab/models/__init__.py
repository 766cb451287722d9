"""The model zoo: our own CIFAR models (exact loaders for the shared pretrained weights),
timm models by name (``timm:NAME`` or a bare timm name) and torchvision models (``tv:NAME``).

>>> from weightlab.models import create_model
>>> model = create_model("resnet56", pretrained=True)      # shared CIFAR-10 weights
>>> vit = create_model("vit_small_patch16_224")            # timm, random init
>>> model.weightlab_cfg.mean, model.weightlab_cfg.input_size          # a ModelCfg
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightlab import paths
from weightlab.errors import WeightlabError, did_you_mean
from weightlab.io import load_weights
from weightlab.models.config import ModelCfg, attach_cfg, model_cfg
from weightlab.models.families import FAMILIES, Family, get_family
from weightlab.models.registry import get_entry, list_registered, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "create_model",
    "rebuild_model",
    "load_state_dict_strict",
    "list_models",
    "register_model",
    "model_family",
    "find_classifier",
    "set_submodule",
    "ModelCfg",
    "model_cfg",
    "attach_cfg",
    "FAMILIES",
    "Family",
    "get_family",
]


def list_models() -> list[str]:
    """Names of weightlab's own models; any timm name and ``tv:NAME`` work too."""
    return list_registered()


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name and optionally load weights.

    ``pretrained=True`` loads the shared CIFAR-10 weights for our models (found through
    ``$WEIGHTLAB_MODELS`` / ``$WEIGHTLAB_SHARED``) and the hub weights for timm/torchvision
    (needs a network). ``weights`` loads a local safetensors or weights-only ``.pt`` file.
    The returned module carries ``weightlab_cfg``, a :class:`ModelCfg` (name, family, mean, std,
    input_size, num_classes).
    """
    source, base = _split(name)
    if source == "weightlab":
        model, cfg = _create_own(base, pretrained and weights is None, num_classes, kwargs)
    elif source == "timm":
        model, cfg = _create_timm(base, pretrained and weights is None, num_classes, kwargs)
    elif source == "python":
        model, cfg = _create_python(base, pretrained and weights is None, num_classes, kwargs)
    else:
        model, cfg = _create_torchvision(base, pretrained and weights is None, num_classes, kwargs)
    if weights is not None:
        load_state_dict_strict(model, load_weights(weights), source=str(weights))
    return attach_cfg(model, cfg)


def model_family(model: nn.Module) -> str:
    cfg = getattr(model, "weightlab_cfg", None)
    return cfg.family if cfg is not None else "generic"


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def find_classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The model's classifier: ``get_classifier()`` (timm and ours) or else its last ``nn.Linear``."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        raise WeightlabError("cannot find the model's classifier (no get_classifier() and no nn.Linear)")
    return next(n for n, m in model.named_modules() if m is head), head


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """``load_state_dict(strict=True)`` with one clear error listing what does not fit."""
    own = model.state_dict()
    # BatchNorm's step counter is often left out of published checkpoints; it carries no weights.
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    # a float parameter given integers (an int copy of a state dict) would load truncated, silently
    dtypes = [
        f"{k} {str(state[k].dtype).replace('torch.', '')}"
        for k in own
        if k in state and own[k].is_floating_point() and not state[k].is_floating_point()
    ]
    problems = []
    if dtypes:
        problems.append(f"not floating-point: {len(dtypes)} key(s) e.g. {'; '.join(dtypes[:3])}")
    if missing:
        problems.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
    if shapes:
        problems.append(f"shape mismatch for {len(shapes)} key(s) e.g. {'; '.join(shapes[:3])}")
    if problems:
        raise WeightlabError(f"{source} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _split(name: str) -> tuple[str, str]:
    for prefix, source in (("timm:", "timm"), ("tv:", "torchvision"), ("torchvision:", "torchvision")):
        if name.startswith(prefix):
            return source, name[len(prefix) :]
    if get_entry(name) is not None:
        return "weightlab", name
    import re

    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name):  # package.module:factory, the user's own model
        return "python", name
    import sys

    # timm imported already (models registered in this session count): ask it; else its cached list of names
    known = None if "timm" in sys.modules else _timm_names()
    if known is None or name in known or "." in name:  # no list yet, or a pretrained tag: timm decides
        import timm

        if timm.is_model(name):
            return "timm", name
        known = known if known is not None else _timm_names(refresh=True)
    hint = did_you_mean(name, [*list_registered(), *(known or [])])
    raise WeightlabError(
        f"unknown model '{name}'{hint}: not a weightlab model ({', '.join(list_registered())}), "
        "not a timm model name; use tv:NAME for torchvision"
    )


def _timm_names(refresh: bool = False) -> list[str] | None:
    """timm's model names, kept in the weightlab cache per installed timm version, so that a mistyped name is
    answered without importing timm (seconds); None when there is no list yet. ``refresh`` (timm imported
    already) writes it."""
    from importlib.metadata import PackageNotFoundError, version

    from weightlab import paths
    from weightlab.io import read_json, write_json

    try:
        path = paths.cache_root() / f"timm-models-{version('timm')}.json"
    except PackageNotFoundError:
        return None
    if not refresh:
        try:
            names = read_json(path)
        except WeightlabError:  # none yet, or damaged: made again
            return None
        return names if isinstance(names, list) else None
    import timm

    names = list(timm.list_models())
    try:
        write_json(path, names)
    except OSError:
        pass  # a read-only cache: the list is made again next time
    return names


def _create_own(name: str, pretrained: bool, num_classes: int | None, kwargs: dict) -> tuple[nn.Module, ModelCfg]:
    entry = get_entry(name)
    assert entry is not None
    kwargs = dict(kwargs)
    input_size = list(kwargs.pop("input_size", entry.input_size))  # e.g. (1, 16, 16) for small grey images
    if tuple(input_size) != tuple(entry.input_size):
        if pretrained:
            raise WeightlabError(f"model '{entry.name}': input_size cannot be changed for pretrained weights")
        if "input_size" in inspect.signature(entry.factory).parameters:  # e.g. an MLP sizes its first layer
            kwargs["input_size"] = tuple(input_size)
        else:
            kwargs.setdefault("in_chans", input_size[0])
    try:
        model = entry.factory(num_classes=num_classes or entry.num_classes, **kwargs)
    except TypeError as e:
        raise WeightlabError(f"model '{entry.name}' does not take these options: {e}") from None
    if tuple(input_size) != tuple(entry.input_size):
        kwargs["input_size"] = list(input_size)
    if pretrained:
        if entry.pretrained_file is None:
            raise WeightlabError(f"model '{entry.name}' has no pretrained weights; pass local weights (weights=PATH)")
        root = paths.models_root()
        if root is None or not (root / entry.pretrained_file).is_file():
            raise WeightlabError(
                f"pretrained weights for '{entry.name}' not found: expected {entry.pretrained_file} under "
                "$WEIGHTLAB_MODELS or <shared>/models/cifar10 (set WEIGHTLAB_SHARED), "
                "or pass local weights (weights=PATH)"
            )
        state = load_weights(root / entry.pretrained_file)
        if num_classes not in (None, entry.num_classes):  # new head: keep everything but the classifier
            own = model.state_dict()
            state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(state, strict=False)
        else:
            load_state_dict_strict(model, state, source=str(root / entry.pretrained_file))
    cfg = ModelCfg(
        name=entry.name,
        source="weightlab",
        family=entry.family,
        mean=entry.mean,
        std=entry.std,
        input_size=input_size,
        num_classes=num_classes or entry.num_classes,
        kwargs=dict(kwargs),
    )
    return model, cfg


def _create_python(name: str, pretrained: bool, num_classes: int | None, kwargs: dict) -> tuple[nn.Module, ModelCfg]:
    """``package.module:factory``: the user's own model, built by calling ``factory(num_classes=..., **kwargs)``
    (``num_classes`` only when given); its family is its class's row of the architecture table (``generic``
    without one), its input ImageNet-normalised at ``input_size`` (default 3x224x224)."""
    import importlib

    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise WeightlabError(f"model '{name}': cannot import {module_name} ({e}); is it on PYTHONPATH?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise WeightlabError(f"model '{name}': {module_name} has no callable '{attr}'")
    if pretrained:
        raise WeightlabError(
            f"model '{name}' is built by your factory: weightlab has no pretrained weights for it; pass local "
            "weights (--weights FILE) or --no-pretrained"
        )
    extra = dict(kwargs)
    input_size = extra.pop("input_size", None)
    try:
        model = factory(**extra, **({"num_classes": num_classes} if num_classes is not None else {}))
    except TypeError as e:
        raise WeightlabError(f"model '{name}': the factory does not take these options ({e})") from None
    if not isinstance(model, nn.Module):
        raise WeightlabError(f"model '{name}': the factory returned a {type(model).__name__}, not an nn.Module")
    classes = num_classes or getattr(model, "num_classes", None)
    if not isinstance(classes, int):
        try:
            classes = find_classifier(model)[1].out_features
        except WeightlabError:
            classes = 0
    cfg = ModelCfg(
        name=name,
        source="python",
        family=_family_of(model),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=list(input_size or (3, 224, 224)),
        num_classes=classes,
        kwargs=dict(kwargs),
    )
    return model, cfg


def _create_timm(name: str, pretrained: bool, num_classes: int | None, kwargs: dict) -> tuple[nn.Module, ModelCfg]:
    import timm

    if not timm.is_model(name):
        raise WeightlabError(f"unknown timm model '{name}'")
    extra = dict(kwargs)
    if num_classes is not None:
        extra["num_classes"] = num_classes
    try:
        model = timm.create_model(name, pretrained=pretrained, **extra)
    except Exception as e:
        if pretrained:
            raise WeightlabError(
                f"could not fetch pretrained weights for timm '{name}' ({type(e).__name__}); "
                "without a network pass local weights (weights=PATH)"
            ) from None
        raise
    pc = getattr(model, "pretrained_cfg", {}) or {}
    family = _family_of(model)
    input_size = list(pc.get("input_size", (3, 224, 224)))
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size:  # a ViT built at another resolution (img_size=32, ...) expects that size
        input_size = [extra.get("in_chans", 3), *img_size]
    cfg = ModelCfg(
        name=name,
        source="timm",
        family=family,
        mean=pc.get("mean", IMAGENET_MEAN),
        std=pc.get("std", IMAGENET_STD),
        input_size=input_size,
        num_classes=model.num_classes,
        kwargs=dict(kwargs),
    )
    return model, cfg


def _create_torchvision(
    name: str, pretrained: bool, num_classes: int | None, kwargs: dict
) -> tuple[nn.Module, ModelCfg]:
    import torchvision

    if name not in torchvision.models.list_models():
        raise WeightlabError(f"unknown torchvision model '{name}'")
    extra = dict(kwargs)
    if num_classes is not None:
        extra["num_classes"] = num_classes
    try:
        model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **extra)
    except Exception as e:
        if pretrained:
            raise WeightlabError(
                f"could not fetch pretrained weights for torchvision '{name}' ({type(e).__name__}); "
                "without a network pass local weights (weights=PATH)"
            ) from None
        raise
    family = _family_of(model)
    n_out = num_classes or 1000
    cfg = ModelCfg(
        name=f"tv:{name}",
        source="torchvision",
        family=family,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(3, 224, 224),
        num_classes=n_out,
        kwargs=dict(kwargs),
    )
    return model, cfg


def _family_of(model: nn.Module) -> str:
    """A library model's family: its class's row of the architecture table (``generic`` without one)."""
    from weightlab.models.families import architecture_row

    row = architecture_row(model)
    return row.family if row is not None else "generic"


def rebuild_model(cfg: ModelCfg | dict) -> nn.Module:
    """Rebuild an (untrained) model from its :class:`ModelCfg` (or its JSON form), e.g. when loading a
    saved artifact; the model carries exactly that configuration."""
    cfg = ModelCfg.from_dict(cfg)
    name = cfg.name if cfg.source != "timm" else f"timm:{cfg.name}"
    model = create_model(name, num_classes=cfg.num_classes, **cfg.kwargs)
    return attach_cfg(model, cfg)
