"""Package `__init__`s that name their public objects without importing them: the first attribute access
imports the module that holds it. Loading a config imports `models.config` and `glue.config`, and that must
not pull in torch, Composer and transformers through the package `__init__`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that finds `name` in submodule `homes[name]`."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__


def resolve(target: str) -> Any:
    """The object a "module:attribute" string names, imported now (the objective and benchmark tables name their
    behaviour so, to import it on first use)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
