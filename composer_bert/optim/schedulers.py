"""Learning-rate schedules as pure functions of the elapsed fraction p in [0, 1] of the run (Cramming).

Cramming's point is that under a fixed compute budget the schedule must follow the *budget*, not a step
count nobody knows in advance: p is the wall-clock fraction when `budget` is set and the fraction of
`max_duration` otherwise (see `RunProgress`). Each shape maps p to a multiplier of `optimizer.lr`; the
Composer scheduler around it holds no state, so a resumed run gets the multiplier an uninterrupted run
would have got at the same p.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from composer.core import State

from composer_bert.optim.config import SchedulerConfig

Shape = Callable[[float], float]


def _ramp(p: float, start: float, end: float, value_at_start: float, value_at_end: float) -> float:
    """Linear interpolation on [start, end]; a zero-width interval jumps straight to the end value."""
    if end <= start:
        return value_at_end
    return value_at_start + (value_at_end - value_at_start) * (p - start) / (end - start)


def triangle(p: float, start_factor: float, peak_fraction: float, final_factor: float) -> float:
    """Cramming's budget triangle: start_factor rising to 1 at peak_fraction, then linear to final_factor at 1."""
    if p < peak_fraction:
        return _ramp(p, 0.0, peak_fraction, start_factor, 1.0)
    return _ramp(p, peak_fraction, 1.0, 1.0, final_factor)


def one_cycle(p: float, final_factor: float) -> float:
    """Cramming's single cycle: 0 rising to 1 at p = 0.5, then linear to final_factor."""
    return triangle(p, 0.0, 0.5, final_factor)


def linear(p: float, warmup_fraction: float, final_factor: float) -> float:
    """Linear warmup from 0 over warmup_fraction, then linear decay to final_factor at p = 1."""
    return triangle(p, 0.0, warmup_fraction, final_factor)


def cosine(p: float, warmup_fraction: float, final_factor: float) -> float:
    """Linear warmup from 0, then a half cosine from 1 down to final_factor at p = 1."""
    if p < warmup_fraction:
        return p / warmup_fraction
    q = _ramp(p, warmup_fraction, 1.0, 0.0, 1.0)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * q))


def wsd(p: float, warmup_fraction: float, decay_fraction: float, final_factor: float) -> float:
    """Warmup-stable-decay: warmup from 0, hold 1, linear decay to final_factor over the last decay_fraction."""
    if p < warmup_fraction:
        return p / warmup_fraction
    decay_start = 1.0 - decay_fraction
    if p < decay_start or decay_fraction == 0:
        return 1.0
    return _ramp(p, decay_start, 1.0, 1.0, final_factor)


def constant(p: float, warmup_fraction: float) -> float:
    """Linear warmup from 0, then 1."""
    return p / warmup_fraction if p < warmup_fraction else 1.0


def schedule_shape(cfg: SchedulerConfig) -> Shape:
    """The multiplier-of-p function `cfg` describes (validated by the config schema, `optim/config.py`)."""
    shapes: dict[str, Shape] = {
        "triangle": functools.partial(
            triangle, start_factor=cfg.start_factor, peak_fraction=cfg.peak_fraction, final_factor=cfg.final_factor
        ),
        "one_cycle": functools.partial(one_cycle, final_factor=cfg.final_factor),
        "linear": functools.partial(linear, warmup_fraction=cfg.warmup_fraction, final_factor=cfg.final_factor),
        "cosine": functools.partial(cosine, warmup_fraction=cfg.warmup_fraction, final_factor=cfg.final_factor),
        "wsd": functools.partial(
            wsd, warmup_fraction=cfg.warmup_fraction, decay_fraction=cfg.decay_fraction, final_factor=cfg.final_factor
        ),
        "constant": functools.partial(constant, warmup_fraction=cfg.warmup_fraction),
    }
    return shapes[cfg.name]


class ProgressScheduler:
    """A Composer scheduler (`(state, ssr) -> lr multiplier`): `shape(progress(state))`.

    Composer evaluates it after every batch (through a LambdaLR) and keeps no state of ours. `ssr` is ignored:
    p is relative to `max_duration`, which the trainer has already scaled by it, or to the wall-clock budget.
    """

    def __init__(self, shape: Shape, progress: Callable[[State], float]):
        self.shape = shape
        self.progress = progress

    def __call__(self, state: State, ssr: float = 1.0) -> float:
        del ssr
        p = min(max(self.progress(state), 0.0), 1.0)
        return self.shape(p)


def build_scheduler(cfg: SchedulerConfig, progress: Callable[[State], float]) -> ProgressScheduler:
    return ProgressScheduler(schedule_shape(cfg), progress)
