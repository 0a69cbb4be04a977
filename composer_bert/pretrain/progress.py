"""The elapsed fraction p in [0, 1] of a run: what budget-aware schedules, the batch ramp and the
sequence-length warmup follow (Cramming: plan by the budget, not by a step count nobody knows up front)."""

from __future__ import annotations

from typing import Protocol

from composer.core import State


class Budget(Protocol):
    """What `RunProgress` needs of a budget (`callbacks.budget.WallClockBudget` is one)."""

    def elapsed_fraction(self) -> float: ...


class RunProgress:
    """p of the run: the budget's `elapsed_fraction()` when there is a budget, else Composer's elapsed duration.

    Without a budget, p is `state.get_elapsed_duration()`, i.e. progress in the unit of `max_duration`
    (batches, tokens, ...). Both are derived from checkpointed state, so p continues where it left off after a
    resume.
    """

    def __init__(self, budget: Budget | None = None):
        self.budget = budget

    def __call__(self, state: State) -> float:
        if self.budget is not None:
            return self.budget.elapsed_fraction()
        elapsed = state.get_elapsed_duration()
        return 0.0 if elapsed is None else min(max(float(elapsed.value), 0.0), 1.0)
