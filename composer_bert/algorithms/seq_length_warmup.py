"""Sequence-length warmup: train on row prefixes that grow linearly to the full length over a fraction of the run.

Composer's own SeqLengthWarmup only accepts HuggingFaceModel and counts progress in batches of
`max_duration`; this one follows the run's progress p (the wall-clock budget when there is one, as the
schedules do). Rows are packed text, so a prefix is a shorter, still valid sequence; masked positions
beyond the cut are simply not predicted: their `masked_positions` slots become empty (-1) and keep their
width, so the MLM head's shape stays fixed. Each new length is a new input shape, so a compiled model
compiles again for it (after the second length with a dynamic sequence dimension); lengths move in
multiples of `step`, and only during the warmup.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from composer_bert.batch import MASKED_POSITIONS


class SeqLengthWarmup(Algorithm):
    """Cut every sequence-shaped tensor of the batch to the current length before the forward pass.

    Arguments come from a validated `SeqLengthWarmupConfig` (`algorithms/config.py`).
    """

    def __init__(self, progress: Callable[[State], float], fraction: float, min_length: int, step: int = 8):
        self.progress, self.fraction, self.min_length, self.step = progress, fraction, min_length, step

    def length_at(self, p: float, full_length: int) -> int:
        """Grows from min_length to full_length in multiples of `step` (rounded down) as p goes 0 -> fraction."""
        if p >= self.fraction or self.min_length >= full_length:
            return full_length
        grown = self.min_length + (full_length - self.min_length) * p / self.fraction
        return max(self.min_length, min(full_length, int(grown) // self.step * self.step))

    def match(self, event: Event, state: State) -> bool:
        return event == Event.AFTER_DATALOADER

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        full_length = state.batch["input_ids"].shape[1]
        length = self.length_at(self.progress(state), full_length)
        if length < full_length:
            state.batch = {key: cut(key, value, length) for key, value in state.batch.items()}
        logger.log_metrics({"seq_length_warmup/length": length})


def cut(key: str, value: torch.Tensor, length: int) -> torch.Tensor:
    """One batch entry cut to rows of `length`: [B, L] tensors to their prefix, masked positions past it emptied."""
    if key == MASKED_POSITIONS:
        return value.masked_fill(value >= length, -1)
    return value[:, :length].contiguous() if value.ndim == 2 else value
