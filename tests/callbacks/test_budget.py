"""The wall-clock budget, driven by a fake clock that the training loop itself advances (so nothing is timed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from composer import Trainer
from composer.core import Callback, Event, State
from composer.loggers import InMemoryLogger, Logger
from composer.utils import dist
from torch.utils.data import DataLoader, TensorDataset

from composer_bert.callbacks.budget import FRACTION_KEY, WallClockBudget
from composer_bert.errors import UserError
from composer_bert.pretrain.progress import RunProgress
from tests.helpers import REPO, launch_two_ranks
from tests.tiny_training import tiny_classifier, tiny_loader, tiny_pretrain_config, tiny_rows, tiny_trainer

BATCH = 4
TRAIN_COST = {Event.AFTER_DATALOADER: 0.5, Event.AFTER_FORWARD: 1.0}  # 1.5 fake seconds per batch, all counted
EXCLUDED_COST = {Event.EVAL_BATCH_END: 100.0, Event.BATCH_CHECKPOINT: 50.0, Event.EPOCH_CHECKPOINT: 50.0}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SpendTime(Callback):
    """Makes events "take" fake seconds. Listed after the budget, so a BATCH_CHECKPOINT cost lands after the
    budget paused for checkpointing, as a slow save by Composer's CheckpointSaver (always last) would."""

    def __init__(self, clock: FakeClock, costs: dict[Event, float]):
        self.clock, self.costs = clock, costs

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        self.clock.now += self.costs.get(event, 0.0)


class RecordEvals(Callback):
    def __init__(self):
        self.at_batches: list[int] = []

    def eval_after_all(self, state: State, logger: Logger) -> None:
        self.at_batches.append(int(state.timestamp.batch))


def loader(num_batches: int) -> DataLoader:
    return tiny_loader(*tiny_rows(num_batches * BATCH, seed=0), BATCH)


def budget_trainer(
    budget: WallClockBudget, clock: FakeClock, folder, *extra: Callback, **kwargs
) -> tuple[Trainer, InMemoryLogger]:
    model = tiny_classifier(hidden=8)
    logger = InMemoryLogger()
    trainer = tiny_trainer(
        model,
        loader(3),  # epochs of 3 batches, so epoch boundaries are crossed too
        torch.optim.SGD(model.parameters(), lr=0.1),
        "1000ba",  # the budget, not this, ends the run
        logger,
        eval_dataloader=loader(2),
        eval_interval="2ba",
        callbacks=[budget, SpendTime(clock, {**TRAIN_COST, **EXCLUDED_COST}), *extra],
        save_folder=str(folder),
        save_interval="1000ba",
        **kwargs,
    )
    return trainer, logger


def test_budget_stops_the_run_with_final_eval_and_checkpoint(tmp_path):
    clock, evals = FakeClock(), RecordEvals()
    budget = WallClockBudget(7.0, clock=clock)
    trainer, logger = budget_trainer(budget, clock, tmp_path, evals)
    trainer.fit()

    # 1.5 s per batch: 4 batches = 6 s < 7 s, 5 batches = 7.5 s. Eval (100 s each) and saving (50 s) don't count.
    assert int(trainer.state.timestamp.batch) == 5
    assert budget.elapsed_seconds() == pytest.approx(7.5)
    assert budget.elapsed_fraction() == 1.0
    assert evals.at_batches == [2, 4, 5]  # interval evals, then the end-of-training eval
    assert (tmp_path / "ep1-ba5-rank0.pt").exists()  # end-of-training checkpoint (save_interval is 1000ba)
    fractions = [value for _, value in logger.data[FRACTION_KEY]]
    assert fractions == pytest.approx([1.5 / 7, 3 / 7, 4.5 / 7, 6 / 7, 1.0])

    saved = torch.load(tmp_path / "ep1-ba5-rank0.pt", weights_only=False)
    assert saved["state"]["callbacks"]["WallClockBudget"]["train_seconds"] == pytest.approx(7.5)


def test_budget_elapsed_carries_across_resumes(tmp_path):
    first_clock = FakeClock()
    first, _ = budget_trainer(WallClockBudget(7.0, clock=first_clock), first_clock, tmp_path / "a")
    first.fit()
    checkpoint = tmp_path / "a" / "ep1-ba5-rank0.pt"

    # A longer budget on resume: 7.5 s already spent, 1.5 s per batch -> 10.5 s after batch 7.
    clock = FakeClock()
    clock.now = 5.0  # a new process: the clock's origin is arbitrary
    budget = WallClockBudget(10.0, clock=clock)
    second, logger = budget_trainer(budget, clock, tmp_path / "b", load_path=str(checkpoint))
    second.fit()
    assert int(second.state.timestamp.batch) == 7
    assert budget.elapsed_seconds() == pytest.approx(10.5)
    assert [int(t.batch) for t, _ in logger.data["loss/train/total"]] == [5, 6]

    # Rerunning a run whose budget is spent trains nothing more.
    clock = FakeClock()
    spent = WallClockBudget(10.0, clock=clock)
    third, logger = budget_trainer(spent, clock, tmp_path / "c", load_path=str(tmp_path / "b" / "ep2-ba7-rank0.pt"))
    third.fit()
    assert int(third.state.timestamp.batch) == 7
    assert "loss/train/total" not in logger.data


def test_state_dict_round_trip_and_progress_source():
    clock = FakeClock()
    budget = WallClockBudget(100.0, clock=clock)
    budget.load_state_dict({"train_seconds": 25.0, "budget_seconds": 100.0})
    assert budget.elapsed_fraction() == pytest.approx(0.25)
    assert RunProgress(budget)(state=None) == pytest.approx(0.25)  # type: ignore[arg-type]
    copy = WallClockBudget(100.0, clock=clock)
    copy.load_state_dict(budget.state_dict())
    assert copy.elapsed_seconds() == pytest.approx(25.0) and copy.elapsed_fraction() == pytest.approx(0.25)
    with pytest.raises(UserError, match="budget"):
        tiny_pretrain_config("budget=0h")


# -- several ranks ---------------------------------------------------------------------------------------


class SpendPerRank(Callback):
    """Rank 0's batches take 1 and 2 fake seconds in turn, rank 1's 0.7: only rank 0's clock may count."""

    def __init__(self, clock: FakeClock):
        self.clock = clock

    def after_dataloader(self, state: State, logger: Logger) -> None:
        if dist.get_global_rank() == 0:
            self.clock.now += 1.0 if int(state.timestamp.batch) % 2 == 0 else 2.0
        else:
            self.clock.now += 0.7


def _run_rank(out_dir: str) -> None:
    """One rank of a 2-process (gloo) run under a 60 s budget; writes what it saw to rank{N}.json."""
    clock = FakeClock()
    budget = WallClockBudget(60.0, clock=clock)
    model = tiny_classifier(hidden=8)
    data = TensorDataset(torch.randn(32, 8), torch.randint(0, 2, (32,)))
    logger = InMemoryLogger()
    sharded = DataLoader(data, batch_size=BATCH, sampler=dist.get_sampler(data))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = tiny_trainer(model, sharded, optimizer, "1000ba", logger, callbacks=[budget, SpendPerRank(clock)])
    trainer.fit()
    record = {"batches": int(trainer.state.timestamp.batch), "syncs": budget.syncs,
              "fractions": [value for _, value in logger.data[FRACTION_KEY]]}
    Path(out_dir, f"rank{dist.get_global_rank()}.json").write_text(json.dumps(record))
    trainer.close()


@pytest.mark.slow
@pytest.mark.scaleout
def test_ranks_agree_every_batch_while_broadcasting_rarely(tmp_path):
    """Rank 0's clock decides; the others follow its extrapolated reading between broadcasts, so every rank
    logs the same fractions and stops after the same batch: the first whose real time reaches the budget."""
    ran = launch_two_ranks(__file__, str(tmp_path), env={"PYTHONPATH": str(REPO)}, timeout=300)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    # rank 0: 1 + 2 + 1 + 2 ... fake seconds; 60 s are reached exactly after batch 40
    assert ranks[0]["batches"] == ranks[1]["batches"] == 40
    assert ranks[0]["fractions"] == ranks[1]["fractions"]
    fractions = ranks[0]["fractions"]
    assert len(fractions) == 40 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert fractions[-2] == pytest.approx(58.0 / 60)  # broadcasts every batch as the budget runs out
    assert ranks[0]["syncs"] == ranks[1]["syncs"] <= 20, ranks[0]["syncs"]


if __name__ == "__main__":
    _run_rank(sys.argv[1])
