"""The `callbacks:` and `loggers:` sections of a recipe."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CallbacksConfig:
    """Monitoring and safety callbacks; see `composer_bert.training_controls`."""

    speed_monitor_window: int = 20  # batches averaged for throughput and MFU
    peak_flops: float | None = None  # dense peak FLOP/s per device for MFU; None: our table (no MFU on CPU)
    grad_norm_interval: int = 10  # log l2_norm/grad/global (pre-clip) every N batches; 0: don't log
    grad_norm_per_layer: bool = False  # also l2_norm/grad/layer_{i}
    nan_guard: bool = True  # stop at a non-finite loss before the optimizer step
    lr_monitor: bool = True


@dataclass
class LoggersConfig:
    progress_bar: bool = True
    wandb_project: str | None = None
    wandb_entity: str | None = None
