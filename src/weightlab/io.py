"""Safe, atomic reading and writing of weights and reports.

Nothing here unpickles user files: safetensors for tensors, ``torch.load(weights_only=True)``
for ``.pt``/``.pth``, JSON for everything else. Every write goes to a temporary file in the
destination folder and is renamed into place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from weightlab.errors import WeightlabError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise WeightlabError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WeightlabError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a safetensors file atomically (tensors brought to the CPU and made contiguous; shared
    storage is cloned)."""
    clean = {
        k: v.detach().cpu().contiguous().clone() if _shares_storage(v, tensors) else v.detach().cpu().contiguous()
        for k, v in tensors.items()
    }
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def _shares_storage(v: torch.Tensor, tensors: dict[str, torch.Tensor]) -> bool:
    ptr = v.untyped_storage().data_ptr()
    return sum(1 for t in tensors.values() if t.untyped_storage().data_ptr() == ptr) > 1


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` header (empty when there is none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightlabError(f"{path}: not a readable safetensors file (truncated or corrupt: {e})") from None


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a weights-only ``.pt``/``.pth``/``.bin``.

    Raises :class:`WeightlabError` naming the file when it is missing, truncated or not a
    plain mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightlabError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightlabError(f"{path}: not a readable safetensors file (truncated or corrupt: {e})") from None
    if path.suffix in {".pt", ".pth", ".bin", ".ckpt"}:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt/unsafe files
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WeightlabError(f"{path}: cannot read as a weights-only torch file ({msg})") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise WeightlabError(f"{path}: expected a mapping of parameter names to tensors")
        return obj
    raise WeightlabError(f"{path}: unknown weights format '{path.suffix}' (use .safetensors or a weights-only .pt)")
