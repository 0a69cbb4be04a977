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

    All ranks must hold the same elapsed time: budget-aware schedules read `elapsed_fraction()` every batch
    (ranks with different learning rates would drift apart) and every rank must stop after the same batch.
    On one rank the host clock is simply read at every BATCH_END. With several, rank 0's reading is
    broadcast only at sync batches (a broadcast is a collective and, on GPUs, a device round trip); in
    between, every rank advances the last agreed reading by the agreed seconds per batch (from the last
    two syncs). That uses agreed numbers only, so every rank computes the same value. The next sync comes
    after about `sync_seconds` of training, but at most half the remaining budget away, and at once when the
    estimate reaches the budget: as the budget runs out syncs come every batch, and the stop is always
    decided on rank 0's real clock. The fraction never decreases (a sync below the estimate holds it).
    """

    def __init__(self, budget_seconds: float, clock: Callable[[], float] = time.monotonic, sync_seconds: float = 10.0):
        self.budget_seconds = float(budget_seconds)
        self.sync_seconds = float(sync_seconds)
        self._clock = clock  # seconds, monotonic; tests pass a fake one
        self._train_seconds = 0.0  # this rank's count at its last BATCH_END (plus closed segments since)
        self._fraction = 0.0  # the agreed elapsed seconds / budget at the last BATCH_END: what schedules read
        self._running_since: float | None = None  # clock reading when the clock last started
        self._resume_after_eval = False
        self.syncs = 0  # broadcasts of rank 0's clock so far in this process
        self._sync_batch: int | None = None  # batch count at the last broadcast, its agreed seconds, and the rate
        self._sync_seconds_agreed = 0.0
        self._seconds_per_batch: float | None = None
        self._next_sync = 0  # batch count at which the next broadcast happens

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
        self._train_seconds += 0.0 if self._running_since is None else now - self._running_since
        if self._running_since is not None:
            self._running_since = now  # the next segment starts where this reading was taken
        batch = int(state.timestamp.batch)
        if dist.get_world_size() == 1:
            seconds = self._train_seconds
        else:
            seconds = self._estimate(batch)
            if batch >= self._next_sync or seconds >= self.budget_seconds:
                seconds = self._sync(state, batch)
        self._fraction = max(self._fraction, seconds / self.budget_seconds)
        logger.log_metrics({FRACTION_KEY: self.elapsed_fraction(), SECONDS_KEY: seconds})
        if self.spent():
            log.info(
                "training budget of %.0f s spent after batch %d; stopping",
                self.budget_seconds,
                int(state.timestamp.batch),
            )
            state.stop_training()

    def _estimate(self, batch: int) -> float:
        """Agreed seconds at `batch`, extrapolated from the last broadcast: the same number on every rank."""
        if self._sync_batch is None or self._seconds_per_batch is None:
            return self._sync_seconds_agreed
        return self._sync_seconds_agreed + self._seconds_per_batch * (batch - self._sync_batch)

    def _sync(self, state: State, batch: int) -> float:
        """Broadcast rank 0's reading, adopt it on every rank, and schedule the next broadcast."""
        agreed = state.device.tensor_to_device(torch.tensor([self._train_seconds], dtype=torch.float64))
        dist.broadcast(agreed, src=0)
        seconds = float(agreed.item())
        self.syncs += 1
        if self._sync_batch is not None and batch > self._sync_batch:
            self._seconds_per_batch = max(0.0, (seconds - self._sync_seconds_agreed) / (batch - self._sync_batch))
        self._train_seconds, self._sync_batch, self._sync_seconds_agreed = seconds, batch, seconds
        rate = self._seconds_per_batch
        ahead = 1 if not rate else max(1, int(min(self.sync_seconds, (self.budget_seconds - seconds) / 2) / rate))
        self._next_sync = batch + ahead
        return seconds

    # -- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.elapsed_seconds(), "budget_seconds": self.budget_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._train_seconds = float(state["train_seconds"])
        self._fraction = self._train_seconds / self.budget_seconds
        self._running_since = None
        self._sync_batch, self._sync_seconds_agreed, self._seconds_per_batch = None, self._train_seconds, None
        self._next_sync = 0  # the first batch after a resume broadcasts
