"""Lazy package attributes (the scientific-python ``lazy_loader`` pattern, SPEC 1): a package lists which
submodule defines each public name, and the submodule is imported on first use. ``import
weightlab.engine.options`` then runs without importing torch, which keeps ``weightlab ... --help`` fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def attach(package: str, names: dict[str, list[str]]) -> tuple[Callable, Callable, list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose ``names`` maps a submodule
    (relative, without the dot) to the public names it defines."""
    where = {name: sub for sub, listed in names.items() for name in listed}

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
            setattr(importlib.import_module(package), name, value)  # the next lookup is a plain attribute
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, list(where)
