"""The `callbacks:` and `loggers:` sections of a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class CallbacksConfig:
    speed_monitor_window: int = 20
    peak_flops: Optional[float] = None
    grad_norm_interval: int = 10
    grad_norm_per_layer: bool = False
    nan_guard: bool = True
    lr_monitor: bool = True


@dataclass
class LoggersConfig:
    progress_bar: bool = True
    log_interval: str = "10ba"
    wandb_project: Optional[str] = None
    wandb_entity: Optional[str] = None
