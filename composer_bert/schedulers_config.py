"""The `scheduler:` and `batch_ramp:` sections: fractions refer to the run's budget (wall clock when
`budget` is set, else `max_duration`)."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.fields import choice


@dataclass
class SchedulerConfig:
    """Learning-rate multiplier as a function of the elapsed fraction of the budget."""

    name: str = choice("triangle", ["triangle", "one_cycle", "linear", "cosine", "wsd", "constant"])
    warmup_fraction: float = 0.06  # linear, cosine, wsd, constant: warmup from 0 over this fraction
    peak_fraction: float = 0.75  # triangle: where the multiplier reaches 1
    start_factor: float = 0.25  # triangle: multiplier at the start
    decay_fraction: float = 0.2  # wsd: decay over this last fraction
    final_factor: float = 0.0  # all but constant: multiplier at the end


@dataclass
class BatchRampConfig:
    """Grow the global batch linearly from `global_train_batch_size` to `final_global_batch_size` by
    gradient accumulation over the first `ramp_fraction` of the budget (Cramming). None = no ramp."""

    final_global_batch_size: int | None = None
    ramp_fraction: float = 0.6


@dataclass
class SeqLengthWarmupConfig:
    """Train on row prefixes growing linearly from `min_length` to the full row over the first `fraction` of
    the run (in multiples of `step`). None = off."""

    fraction: float | None = None
    min_length: int = 32
    step: int = 8
