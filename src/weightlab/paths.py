"""Where weightlab finds the shared material (real data, pretrained models) and its cache."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_root() -> Path | None:
    """The ``shared`` folder: ``$WEIGHTLAB_SHARED``, else ``../shared`` from the working
    directory or from the repository checkout. ``None`` when none exists."""
    env = os.environ.get("WEIGHTLAB_SHARED")
    candidates = [Path(env)] if env else [Path.cwd().parent / "shared", _REPO_ROOT.parent / "shared"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def data_root() -> Path | None:
    """Root of the real data sets: ``$WEIGHTLAB_DATA``, else ``<shared>/data``."""
    env = os.environ.get("WEIGHTLAB_DATA")
    if env:
        return Path(env)
    s = shared_root()
    return s / "data" if s is not None and (s / "data").is_dir() else None


def models_root() -> Path | None:
    """Folder of the shared pretrained CIFAR-10 weights (``<shared>/models/cifar10``)."""
    env = os.environ.get("WEIGHTLAB_MODELS")
    if env:
        return Path(env)
    s = shared_root()
    return s / "models" / "cifar10" if s is not None and (s / "models" / "cifar10").is_dir() else None


def cache_root() -> Path:
    """Writable cache (extracted archives): ``$WEIGHTLAB_CACHE`` or ``~/.cache/weightlab``."""
    p = Path(os.environ.get("WEIGHTLAB_CACHE", Path.home() / ".cache" / "weightlab"))
    p.mkdir(parents=True, exist_ok=True)
    return p
