"""Everything that steers a pretraining run besides model, data and optimizer, built from one config.

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
from composer_bert.callbacks.budget import RunProgress, WallClockBudget
from composer_bert.callbacks.grad_norm import GradNormClip, check_grad_norm_settings
from composer_bert.callbacks.nan_guard import NaNGuard
from composer_bert.callbacks.peak_flops import resolve_peak_flops
from composer_bert.config import PretrainConfig, parse_budget_seconds
from composer_bert.errors import UserError
from composer_bert.schedulers import build_scheduler, check_scheduler_config


@dataclass
class TrainingControls:
    """What `build_training_controls` returns; `budget` and `progress` are exposed for inspection."""

    callbacks: list[Callback]
    algorithms: list[Algorithm]
    schedulers: list[ComposerScheduler]
    budget: WallClockBudget | None
    progress: RunProgress


def check_training_controls(cfg: PretrainConfig) -> None:
    """Raise a UserError for settings `build_training_controls` would reject, without building anything."""
    check_scheduler_config(cfg.scheduler)
    if cfg.callbacks.speed_monitor_window < 1:
        raise UserError(
            f"config key 'callbacks.speed_monitor_window' is {cfg.callbacks.speed_monitor_window}; use >= 1 batches"
        )
    if cfg.callbacks.peak_flops is not None and cfg.callbacks.peak_flops <= 0:
        raise UserError(
            f"config key 'callbacks.peak_flops' is {cfg.callbacks.peak_flops}; "
            "give the device's dense peak FLOP/s, e.g. 312e12"
        )
    check_grad_norm_settings(cfg.optimizer.grad_clip_norm, cfg.callbacks.grad_norm_interval)
    if cfg.budget is not None:
        parse_budget_seconds(cfg.budget)
    if cfg.batch_ramp.final_global_batch_size is not None:
        _batch_ramp(cfg, RunProgress())
    warmup = cfg.seq_length_warmup
    if warmup.fraction is not None:
        SeqLengthWarmup(RunProgress(), warmup.fraction, warmup.min_length, warmup.step)


def _batch_ramp(cfg: PretrainConfig, progress: RunProgress) -> BatchRamp:
    return BatchRamp(
        start_batch_size=cfg.global_train_batch_size,
        final_batch_size=cfg.batch_ramp.final_global_batch_size,
        ramp_fraction=cfg.batch_ramp.ramp_fraction,
        progress=progress,
    )


def build_training_controls(cfg: PretrainConfig) -> TrainingControls:
    """Callbacks, algorithms and the LR schedule for `cfg`, in the order they must run.

    Callback order matters where two act on the same event: the budget comes first (its clock pauses at
    BATCH_CHECKPOINT before the checkpoint saver, which Composer appends last), then the NaN guard (checks
    the loss before clipping touches the gradients), then gradient norm and clipping.
    """
    check_training_controls(cfg)
    budget = WallClockBudget(parse_budget_seconds(cfg.budget)) if cfg.budget is not None else None
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
        algorithms.append(_batch_ramp(cfg, progress))
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
