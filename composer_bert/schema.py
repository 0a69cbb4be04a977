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
import os
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


# numpy seeds its generators with [0, 2**32 - 1] only, and Composer (reproducibility.MAX_SEED) and our samplers
# pass their seeds on to numpy: the one range of every seed in a config.
MAX_SEED = 2**32 - 1
SEED_RANGE = f"a seed in [0, {MAX_SEED}] (numpy's range, which Composer's seeding uses)"


def seed_field(default: Any) -> Any:
    """An integer seed (None passes where the field allows it: "take the run's seed")."""
    return bounded(default, SEED_RANGE, ge=0, le=MAX_SEED)


def check_run_seed(key: str, seed: int, shown: Any = None) -> None:
    """A seed given to Composer's Trainer: rank r seeds with seed + r, so the last rank's must fit too (the
    launcher's WORLD_SIZE; validation runs before torch.distributed starts)."""
    ranks = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    if not 0 <= seed <= MAX_SEED - ranks + 1:
        on_ranks = f", at most {MAX_SEED - ranks + 1} on {ranks} ranks (rank r seeds with seed + r)" if ranks > 1 else ""
        raise key_error(key, seed if shown is None else shown, SEED_RANGE + on_ranks)


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
