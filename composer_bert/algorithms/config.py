"""The `batch_ramp:` and `seq_length_warmup:` sections: fractions refer to the run's budget (wall clock when
`budget` is set, else `max_duration`). Rules that involve the global batch are checked by `PretrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.schema import bounded, positive

# Why not: the open window's gradient sum is part of the state_dict so that a checkpoint saved mid-window
# resumes exactly; under FSDP those gradients are per-rank shards (DTensors), which our state_dict (and its
# name-keyed, unsharded resume across world sizes) does not hold. It can change: keep the sum as DTensors and
# save it through Composer's sharded checkpoint (torch.distributed.checkpoint), or close every window before a
# checkpoint. Until then a fixed larger batch (gradient accumulation via device_train_microbatch_size) works.
FSDP_REFUSAL = (
    "batch_ramp does not work with parallelism.fsdp (its mid-window gradient sum cannot go into a sharded "
    "checkpoint); drop batch_ramp.final_global_batch_size and set global_train_batch_size to the batch you want, "
    "or drop parallelism.fsdp"
)


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
