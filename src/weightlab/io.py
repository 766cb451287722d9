"""Safe, atomic reading and writing of weights and reports.

Nothing here unpickles user files: safetensors for tensors, ``torch.load(weights_only=True)``
for ``.pt``/``.pth``, JSON for everything else. Every write goes to a temporary file in the
destination folder and is renamed into place, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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
        # mkstemp makes 0600, and some writers (safetensors) make their own 0600 file: a finished file
        # gets the usual mode, whoever wrote it
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and make sure a file can be written there, before any work starts;
    raises one :class:`WeightlabError` line naming the folder otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WeightlabError(f"{folder}: the {what} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = {
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system",
        }
        raise WeightlabError(
            f"{folder}: cannot write to the {what} ({why.get(e.errno, e.strerror or type(e).__name__)})"
        ) from None
    return folder


def tensors_sha256(tensors: dict[str, torch.Tensor], header: bytes = b"") -> str:
    """sha256 of ``header`` and the tensors (in name order: name, dtype, shape, bytes)."""
    h = hashlib.sha256(header)
    for k, v in sorted(tensors.items()):
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | os.PathLike) -> dict:
    """What a manifest stores to verify a file on reuse: its size and sha256."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def file_matches(path: str | os.PathLike, record: dict | None) -> bool:
    """Whether ``path`` is the file ``record`` (from :func:`file_record`) describes (a record without a
    hash, from before hashes were kept, checks the size only)."""
    path = Path(path)
    if not path.is_file() or not record:
        return False
    if record.get("bytes") is not None and path.stat().st_size != record["bytes"]:
        return False
    return record.get("sha256") is None or file_sha256(path) == record["sha256"]


def differences(stored: dict, current: dict) -> list[str]:
    """The entries in which two input identities differ, as ``key: stored -> current`` (nested keys
    dotted); a key only one side has counts when the other side has it."""
    out = []
    for k in sorted(set(stored) | set(current)):
        a, b = stored.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in differences(a, b)]
        elif _plain(a) != _plain(b):
            out.append(f"{k}: {_short(a)} -> {_short(b)}")
    return out


def _plain(v: Any) -> Any:
    return json.loads(json.dumps(v, default=_json_default))


def _short(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64:  # a sha256
        return v[:12] + "…"
    text = json.dumps(v, default=_json_default)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_changed(where: str | os.PathLike, stored: dict, current: dict, remedy: str = "") -> None:
    """Refuse to resume ``where`` with other inputs than it was made with: one line naming the
    differences (nothing happens when there are none)."""
    if not isinstance(stored, dict):
        raise WeightlabError(
            f"{where}: damaged record of the inputs it was made with (a {type(stored).__name__}, not a mapping); "
            + (remedy or "use a new output folder")
        )
    diff = differences(stored, current)
    if diff:
        raise WeightlabError(
            f"{where}: was made with other inputs ({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
            + (remedy or "use a new output folder, or the same inputs to resume")
        )


@contextlib.contextmanager
def damaged(path: str | os.PathLike, what: str = "file") -> Iterator[None]:
    """Read a weightlab JSON record inside this block: a key it lacks or a value of the wrong type (a file
    edited by hand, or written by another tool) is one :class:`WeightlabError` naming the file, never a
    traceback."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        if isinstance(e, WeightlabError):
            raise
        detail = f"no {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise WeightlabError(f"{path}: damaged {what} ({detail}); it was edited or written by another tool") from None


def check_resume(where: str | os.PathLike, meta: dict, current: dict, remedy: str = "") -> None:
    """Refuse to resume the run ``meta`` (a manifest) describes with other inputs: ``current`` maps each
    manifest key to its value now; a key the manifest lacks (written before it was recorded) is not
    compared."""
    stored = {k: meta[k] for k in current if k in meta}
    refuse_changed(where, stored, {k: current[k] for k in stored}, remedy)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (UTF-8); a file that already holds exactly it is left untouched."""
    write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> None:
    """Render a matplotlib figure (format from the suffix, PNG by default), write it with :func:`write_bytes`
    and close it: a rerun that draws the same figure leaves the file untouched."""
    import io as _io

    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    try:
        fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically; a file that already holds exactly these bytes is left untouched (no new
    timestamp: a resume that changes nothing writes nothing)."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass  # unreadable: write it
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise WeightlabError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise WeightlabError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise WeightlabError(f"{path}: not UTF-8 text (JSON files are read as UTF-8)") from None


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
        _sort_metadata(tmp)


def _sort_metadata(path: Path) -> None:
    """Write the header's metadata in key order: safetensors writes it in hash-map order, which changes
    from call to call, so the same tensors and metadata would not give the same bytes. Only the metadata
    object is rewritten (the same length); a header that is not as expected is left alone."""
    import struct

    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        meta = json.loads(raw).get("__metadata__") or {}
        if len(meta) < 2:
            return
        compact = lambda d: json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()  # noqa: E731
        old, new = compact(meta), compact(dict(sorted(meta.items())))
        at = raw.find(b'"__metadata__":' + old)
        if at >= 0 and len(old) == len(new):
            f.seek(8 + at + len(b'"__metadata__":'))
            f.write(new)


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


def check_finite(state: dict[str, torch.Tensor], source) -> dict[str, torch.Tensor]:
    """``state``, after checking that no floating-point tensor holds NaN or Inf (weights that would make
    every output non-finite): one clear error naming the first such key and how many there are."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightlabError(f"{source}: {len(bad)} tensor(s) hold NaN or Inf values, e.g. '{bad[0]}'")
    return state


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
            return check_finite(load_file(str(path)), path)
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
        return check_finite(obj, path)
    raise WeightlabError(f"{path}: unknown weights format '{path.suffix}' (use .safetensors or a weights-only .pt)")
