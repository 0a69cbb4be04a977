"""The one dataclass-field helper the config schema shares; no imports, so every config module can use it."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def choice(default: Any, choices: list[Any], help: str = "") -> Any:
    """A dataclass field whose value must be one of `choices` (checked by `config.load_config`)."""
    return field(default=default, metadata={"choices": choices, "help": help})
