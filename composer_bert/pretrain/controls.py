"""Everything that steers a pretraining run besides model, data and optimizer, built from one validated config.

The trainer calls `build_training_controls(cfg)` and passes the result's callbacks, algorithms and
schedulers to Composer's Trainer (with `step_schedulers_every_batch=True`). With `budget` set, give the
Trainer a `max_duration` the budget will not reach: the budget callback ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.callbacks import LRMonitor, SpeedMonitor
from composer.core import Algorithm, Callback
from composer.optim import ComposerScheduler

from composer_bert.algorithms.batch_ramp import BatchRamp
from composer_bert.algorithms.seq_length_warmup import SeqLengthWarmup
from composer_bert.callbacks.budget import WallClockBudget
from composer_bert.callbacks.grad_norm import GradNormClip
from composer_bert.callbacks.nan_guard import NaNGuard
from composer_bert.optim.schedulers import build_scheduler
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.pretrain.progress import RunProgress
from composer_bert.run.peak_flops import resolve_peak_flops


@dataclass
class TrainingControls:
    """What `build_training_controls` returns; `budget` and `progress` are exposed for inspection."""

    callbacks: list[Callback]
    algorithms: list[Algorithm]
    schedulers: list[ComposerScheduler]
    budget: WallClockBudget | None
    progress: RunProgress


def build_training_controls(cfg: PretrainConfig) -> TrainingControls:
    """Callbacks, algorithms and the LR schedule for `cfg`, in the order they must run.

    Callback order matters where two act on the same event: the budget comes first (its clock pauses at
    BATCH_CHECKPOINT before the checkpoint saver, which Composer appends last), then the NaN guard (checks
    the loss before clipping touches the gradients), then gradient norm and clipping.
    """
    budget = WallClockBudget(cfg.budget_seconds) if cfg.budget_seconds is not None else None
    progress = RunProgress(budget)

    callbacks: list[Callback] = []
    if budget is not None:
        callbacks.append(budget)
    if cfg.callbacks.nan_guard:
        callbacks.append(NaNGuard())
    if cfg.optimizer.grad_clip_norm is not None or cfg.callbacks.grad_norm_interval > 0:
        callbacks.append(
            GradNormClip(
                cfg.optimizer.grad_clip_norm, cfg.callbacks.grad_norm_interval, cfg.callbacks.grad_norm_per_layer
            )
        )
    peak_flops = resolve_peak_flops(cfg.precision, cfg.callbacks.peak_flops)
    callbacks.append(SpeedMonitor(window_size=cfg.callbacks.speed_monitor_window, gpu_flops_available=peak_flops))
    if cfg.callbacks.lr_monitor:
        callbacks.append(LRMonitor())

    algorithms: list[Algorithm] = []
    if cfg.batch_ramp.final_global_batch_size is not None:
        algorithms.append(
            BatchRamp(cfg.global_train_batch_size, cfg.batch_ramp.final_global_batch_size, cfg.batch_ramp.ramp_fraction, progress)
        )
    warmup = cfg.seq_length_warmup
    if warmup.fraction is not None:
        algorithms.append(SeqLengthWarmup(progress, warmup.fraction, warmup.min_length, warmup.step))

    return TrainingControls(
        callbacks=callbacks,
        algorithms=algorithms,
        schedulers=[build_scheduler(cfg.scheduler, progress)],
        budget=budget,
        progress=progress,
    )
