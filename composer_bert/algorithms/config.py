"""The `batch_ramp:` and `seq_length_warmup:` sections: fractions refer to the run's budget (wall clock when
`budget` is set, else `max_duration`). Rules that involve the global batch are checked by `PretrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.schema import bounded, positive


@dataclass
class BatchRampConfig:
    """Grow the global batch linearly from `global_train_batch_size` to `final_global_batch_size` by
    gradient accumulation over the first `ramp_fraction` of the budget (Cramming). None = no ramp."""

    final_global_batch_size: int | None = positive(None, "a multiple of global_train_batch_size")
    ramp_fraction: float = bounded(0.6, "a fraction of the budget in (0, 1]", gt=0, le=1)


@dataclass
class SeqLengthWarmupConfig:
    """Train on row prefixes growing linearly from `min_length` to the full row over the first `fraction` of
    the run (in multiples of `step`). None = off."""

    fraction: float | None = bounded(None, "a fraction of the run in (0, 1]", gt=0, le=1)
    min_length: int = bounded(32, "a length >= 2", ge=2)
    step: int = positive(8, "a step >= 1")
