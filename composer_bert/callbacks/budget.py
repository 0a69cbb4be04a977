"""A wall-clock training budget (Cramming: one GPU, one day) that ends training cleanly when it is spent.

Composer's `max_duration` cannot be wall-clock time, so the run sets a large `max_duration` and this
callback calls `state.stop_training()` once the budget is used up. Composer then still runs what it runs at
the end of training: the final checkpoint (BATCH_CHECKPOINT at elapsed duration 1.0) and the final eval
(FIT_END). Only training counts: time spent in evaluation and in saving checkpoints is excluded, and the
count carries across resumes through the callback's state_dict, which Composer saves in every checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

log = logging.getLogger(__name__)

FRACTION_KEY = "time/budget_elapsed_fraction"
SECONDS_KEY = "time/budget_train_seconds"


class WallClockBudget(Callback):
    """Stop training after `budget_seconds` of training time, counted across resumes.

    The clock runs from FIT_START, pauses for evaluation (EVAL_BEFORE_ALL .. EVAL_AFTER_ALL) and from each
    BATCH_CHECKPOINT / EPOCH_CHECKPOINT (checkpoint saving; Composer's CheckpointSaver runs after our
    callbacks) until the next batch is fetched. Data loading counts. Put it before other callbacks.

    At every BATCH_END rank 0's reading is broadcast, so all ranks hold the same elapsed time, stop after
    the same batch, and budget-aware schedules (which read `elapsed_fraction()`) agree across ranks.
    """

    def __init__(self, budget_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.budget_seconds = float(budget_seconds)
        self._clock = clock  # seconds, monotonic; tests pass a fake one
        self._train_seconds = 0.0  # agreed across ranks at the last BATCH_END (plus closed segments since)
        self._fraction = 0.0  # `_train_seconds / budget` at the last BATCH_END: what schedules read
        self._running_since: float | None = None  # clock reading when the clock last started
        self._resume_after_eval = False

    # -- the clock ---------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._running_since is None:
            self._running_since = self._clock()

    def _pause(self) -> None:
        if self._running_since is not None:
            self._train_seconds += self._clock() - self._running_since
            self._running_since = None

    def elapsed_seconds(self) -> float:
        """Training seconds so far on this rank, including the running segment."""
        running = 0.0 if self._running_since is None else self._clock() - self._running_since
        return self._train_seconds + running

    def elapsed_fraction(self) -> float:
        """Fraction of the budget spent as of the last finished batch, in [0, 1]; the same on every rank."""
        return min(self._fraction, 1.0)

    def spent(self) -> bool:
        return self._fraction >= 1.0

    # -- events --------------------------------------------------------------------------------------
    def fit_start(self, state: State, logger: Logger) -> None:
        if self.spent():
            log.info(
                "the %.0f s training budget was already spent before this run; not training further",
                self.budget_seconds,
            )
            state.stop_training()
            return
        self._start()

    def epoch_start(self, state: State, logger: Logger) -> None:
        self._start()  # covers creating the epoch's dataloader iterator

    def before_dataloader(self, state: State, logger: Logger) -> None:
        self._start()

    def eval_before_all(self, state: State, logger: Logger) -> None:
        self._resume_after_eval = self._running_since is not None
        self._pause()

    def eval_after_all(self, state: State, logger: Logger) -> None:
        if self._resume_after_eval:
            self._start()

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        self._pause()

    def epoch_checkpoint(self, state: State, logger: Logger) -> None:
        self._pause()

    def fit_end(self, state: State, logger: Logger) -> None:
        self._pause()

    def batch_end(self, state: State, logger: Logger) -> None:
        now = self._clock()
        seconds = self._train_seconds + (0.0 if self._running_since is None else now - self._running_since)
        if dist.get_world_size() > 1:
            agreed = state.device.tensor_to_device(torch.tensor([seconds], dtype=torch.float64))
            dist.broadcast(agreed, src=0)
            seconds = float(agreed.item())
        self._train_seconds = seconds
        if self._running_since is not None:
            self._running_since = now  # the next segment starts where this reading was taken
        self._fraction = seconds / self.budget_seconds
        logger.log_metrics({FRACTION_KEY: self.elapsed_fraction(), SECONDS_KEY: seconds})
        if self.spent():
            log.info(
                "training budget of %.0f s spent after batch %d; stopping",
                self.budget_seconds,
                int(state.timestamp.batch),
            )
            state.stop_training()

    # -- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.elapsed_seconds(), "budget_seconds": self.budget_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._train_seconds = float(state["train_seconds"])
        self._fraction = self._train_seconds / self.budget_seconds
        self._running_since = None
