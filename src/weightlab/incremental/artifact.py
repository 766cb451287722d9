"""Task artifacts and the shared base on disk -- safetensors + JSON, nothing pickled.

A task: ``<dir>/task.safetensors`` (its backbone tensors under ``backbone.``, its head under ``head.``)
and ``<dir>/task.json`` (name, classes, method, the fingerprint of the base it was learnt on,
parameter/byte counts, metrics). Loading a task onto another base is refused.

The base: ``<dir>/base.json`` + a RECAST model directory (``save_recast``) or ``model.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

import weightlab
from weightlab.errors import WeightlabError
from weightlab.incremental.methods import parse_method
from weightlab.incremental.model import TaskModel
from weightlab.io import damaged, file_matches, file_record, load_weights, read_json, save_tensors, write_json

TASK_FORMAT = "weightlab.task/1"
BASE_FORMAT = "weightlab.base/1"


def save_task(
    model: TaskModel, name: str, directory: str | Path, metrics: dict | None = None, inputs: dict | None = None
) -> Path:
    """Write the task's tensors, then the JSON that commits them (with their size and sha256, and
    ``inputs``: what the task was learnt from)."""
    if name not in model.task_states:
        raise WeightlabError(f"no learnt task '{name}' to save")
    directory = Path(directory)
    state = model.task_states[name]
    packed = model.adapter.pack_state(state) if model.adapter else state
    tensors = {f"backbone.{k}": v for k, v in packed.items()}
    tensors.update({f"head.{k}": v for k, v in model.heads[name].state_dict().items()})
    save_tensors(directory / "task.safetensors", tensors, metadata={"format": TASK_FORMAT, "base": model.base_hash})
    write_json(
        directory / "task.json",
        dict(
            format=TASK_FORMAT,
            weightlab_version=weightlab.__version__,
            name=name,
            classes=model.task_info[name]["classes"],
            method=model.method.to_dict(),
            bn=model.bn,
            base_hash=model.base_hash,
            model=model.model_cfg.name if model.model_cfg else None,
            counts=model.counts(name),
            file_bytes=(directory / "task.safetensors").stat().st_size,
            tensors=file_record(directory / "task.safetensors"),
            metrics=metrics or {},
            **({"inputs": inputs} if inputs is not None else {}),
        ),
    )
    return directory


def read_task_meta(directory: str | Path) -> dict:
    meta = read_json(Path(directory) / "task.json")
    if not isinstance(meta, dict) or meta.get("format") != TASK_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise WeightlabError(f"{directory}: not a weightlab task artifact (format {found!r})")
    return meta


def load_task(model: TaskModel, directory: str | Path) -> str:
    """Add the task saved in ``directory`` to ``model``; returns its name."""
    directory = Path(directory)
    meta = read_task_meta(directory)
    with damaged(directory / "task.json", "task record"):
        return _load_task(model, directory, meta)


def _load_task(model: TaskModel, directory: Path, meta: dict) -> str:
    if not isinstance(meta.get("metrics", {}), dict) or not isinstance(meta["classes"], list):
        raise TypeError("metrics must be a mapping and classes a list")
    if meta["base_hash"] != model.base_hash:
        raise WeightlabError(
            f"task '{meta['name']}' ({directory}) was learnt on base {meta['base_hash'][:12]}, "
            f"not on this model's base {model.base_hash[:12]}: load it onto the base it belongs to"
        )
    if meta["method"]["name"] != model.method.name or meta.get("bn", "task") != model.bn:
        raise WeightlabError(
            f"task '{meta['name']}' uses method {meta['method']['name']} (bn={meta.get('bn')}), "
            f"this model {model.method.name} (bn={model.bn})"
        )
    if not file_matches(directory / "task.safetensors", meta.get("tensors") or {"bytes": meta.get("file_bytes")}):
        raise WeightlabError(
            f"{directory / 'task.safetensors'}: does not match task.json (size or sha256): an interrupted save? "
            "learn the task again"
        )
    tensors = load_weights(directory / "task.safetensors")
    state = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
    head = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    if model.adapter is not None:
        state = model.adapter.unpack_state(state, {k: model._live[k] for k in model.task_keys})
    model.add_task(meta["name"], meta["classes"], state, head, info=dict(metrics=meta.get("metrics", {})))
    return meta["name"]


def save_base(base_model: nn.Module, directory: str | Path, inputs: dict | None = None) -> Path:
    """Save the shared base (RECAST or plain, with its original classifier); ``inputs`` (what it was
    built from) goes to base.json, where a rerun into the same folder is checked against it."""
    from weightlab.recast.serialization import save_recast
    from weightlab.recast.tuner import is_recast

    directory = Path(directory)
    cfg = getattr(base_model, "weightlab_cfg", None)
    if cfg is None:
        raise WeightlabError("save_base needs a model built by weightlab.models.create_model (no weightlab_cfg)")
    if is_recast(base_model):
        save_recast(base_model, directory / "recast")
    else:
        save_tensors(directory / "model.safetensors", base_model.state_dict(), metadata={"format": BASE_FORMAT})
    meta = dict(format=BASE_FORMAT, model=cfg.to_dict(), recast=is_recast(base_model))
    if inputs is not None:
        meta["inputs"] = inputs
    write_json(directory / "base.json", meta)
    return directory


def load_base(directory: str | Path) -> nn.Module:
    from weightlab.models import load_state_dict_strict, rebuild_model
    from weightlab.recast.serialization import load_recast

    directory = Path(directory)
    meta = read_json(directory / "base.json")
    if not isinstance(meta, dict) or meta.get("format") != BASE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise WeightlabError(f"{directory}: not a weightlab base (format {found!r})")
    with damaged(directory / "base.json", "base record"):
        if meta["recast"]:
            return load_recast(directory / "recast")
        model = rebuild_model(meta["model"])
    load_state_dict_strict(model, load_weights(directory / "model.safetensors"), source=str(directory))
    return model


def load_task_model(
    base_dir: str | Path, task_dirs: list[str | Path], *, method: str | None = None, seed: int = 0
) -> TaskModel:
    """A TaskModel on a saved base with the given task artifacts loaded (method read from the first)."""
    if not task_dirs and method is None:
        raise WeightlabError("no task artifacts given")
    first = read_task_meta(task_dirs[0]) if task_dirs else None
    spec = parse_method(method or first["method"]["name"])
    bn = first.get("bn", "task") if first else "task"
    tm = TaskModel.from_base(load_base(base_dir), spec, bn=bn, seed=seed)
    for d in task_dirs:
        load_task(tm, d)
    if tm.task_names:
        tm.set_task(tm.task_names[0])
    return tm


__all__ = [
    "save_task",
    "load_task",
    "read_task_meta",
    "save_base",
    "load_base",
    "load_task_model",
    "TASK_FORMAT",
    "BASE_FORMAT",
]
