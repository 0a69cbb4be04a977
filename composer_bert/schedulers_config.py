"""The `scheduler:` and `batch_ramp:` sections: fractions refer to the run's budget (wall clock when
`budget` is set, else `max_duration`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


def choice(default: Any, choices: list[Any]) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass
class SchedulerConfig:
    """Learning-rate multiplier as a function of the elapsed fraction of the budget."""

    name: str = choice("triangle", ["triangle", "one_cycle", "linear", "cosine", "wsd", "constant"])
    warmup_fraction: float = 0.06
    peak_fraction: float = 0.75
    start_factor: float = 0.25
    decay_fraction: float = 0.2
    final_factor: float = 0.0


@dataclass
class BatchRampConfig:
    """Grow the global batch linearly from `global_train_batch_size` to `final_global_batch_size` by
    gradient accumulation over the first `ramp_fraction` of the budget (Cramming). None = no ramp."""

    final_global_batch_size: Optional[int] = None
    ramp_fraction: float = 0.6
