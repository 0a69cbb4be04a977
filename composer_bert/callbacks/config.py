"""The `callbacks:` section of a recipe (the `loggers:` section is `run/loggers_config.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.schema import bounded, positive


@dataclass
class CallbacksConfig:
    """Monitoring and safety callbacks; `composer_bert.pretrain.controls` builds them."""

    # batches averaged for throughput and MFU
    speed_monitor_window: int = positive(20, ">= 1 batches")
    # dense peak FLOP/s per device for MFU; None: our table in composer_bert/run/peak_flops.py (no MFU on CPU)
    peak_flops: float | None = positive(None, "the device's dense peak FLOP/s, e.g. 312e12")
    # log l2_norm/grad/global (pre-clip) every N batches; 0: don't log
    grad_norm_interval: int = bounded(10, "a number of batches >= 1, or 0 for no logging", ge=0)
    grad_norm_per_layer: bool = False  # also l2_norm/grad/layer_{i}
    nan_guard: bool = True  # stop at a non-finite loss before the optimizer step
    lr_monitor: bool = True
