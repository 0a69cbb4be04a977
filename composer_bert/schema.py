"""The one validation pass over a config tree, and the field helpers that declare what it checks.

Every section dataclass (model, data, optimizer, scheduler, ...) lives beside the component it configures
and declares its rules here: `choice(...)` for a closed set of values, `bounded(...)` for a numeric range,
and an optional `check(self)` method for rules that tie several keys together. `validate` walks the tree
once, leaves first, so a section's `check` can rely on its own keys being in range. `run/config.py`'s `load_config`
runs it before any heavy import; models built from a checkpoint run it on their `ModelConfig` too.

Standard library only: `models/config.py` imports this, and exported Hugging Face models carry both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from composer_bert.errors import UserError


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric key; None is no bound. `text` says it for the error message."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    text: str = ""

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


def choice(default: Any, choices: list[Any], help: str = "") -> Any:
    """A dataclass field whose value must be one of `choices`."""
    return field(default=default, metadata={"choices": choices, "help": help})


def bounded(default: Any, text: str, *, ge=None, gt=None, le=None, lt=None) -> Any:
    """A numeric dataclass field that must lie in a range; `text` completes "use ...", e.g. "a positive size".

    None passes when the field allows it (Optional types): it means "off" or "take the default".
    """
    return field(default=default, metadata={"range": Range(ge, gt, le, lt, text)})


def positive(default: Any, what: str = "a positive number") -> Any:
    return bounded(default, what, gt=0)


def probability(default: Any, what: str = "a probability in [0, 1)") -> Any:
    return bounded(default, what, ge=0, lt=1)


def fraction(default: Any, what: str = "a fraction in [0, 1]") -> Any:
    return bounded(default, what, ge=0, le=1)


def key_error(key: str, value: Any, expected: str) -> UserError:
    """The one shape of a bad-value message: which key, what it holds, what to use instead."""
    return UserError(f"config key '{key}' is {value!r}; use {expected}")


def _check_leaf(key: str, value: Any, metadata: Any) -> None:
    if "choices" in metadata and value not in metadata["choices"]:
        options = ", ".join(map(str, metadata["choices"]))
        raise UserError(f"config key '{key}' is '{value}'; choose one of: {options}")
    if isinstance(value, float) and not math.isfinite(value):
        raise key_error(key, value, "a finite number")
    bounds = metadata.get("range")
    if bounds is not None and value is not None and not bounds.holds(value):
        raise key_error(key, value, bounds.text)


def validate(node: Any, prefix: str = "") -> None:
    """Check every key of a config tree (ranges, choices, finiteness), then each section's own `check()`.

    Raises a `UserError` naming the first offending key with its full dotted path.
    """
    for f in fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            validate(value, f"{key}.")
        elif isinstance(value, dict):
            for name, item in value.items():
                if is_dataclass(item):
                    validate(item, f"{key}.{name}.")
        else:
            _check_leaf(key, value, f.metadata)
    check = getattr(node, "check", None)
    if callable(check):
        check()
