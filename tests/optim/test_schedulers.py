"""Budget-aware LR schedules: values at key fractions, validation, and the same multiplier after a resume."""

from __future__ import annotations

import pytest
import torch
from composer import Trainer
from composer.callbacks import LRMonitor
from composer.loggers import InMemoryLogger
from composer.models import ComposerClassifier
from torch import nn

from composer_bert.callbacks.budget import WallClockBudget
from composer_bert.errors import UserError
from composer_bert.optim.config import SchedulerConfig
from composer_bert.optim.schedulers import ProgressScheduler, build_scheduler, schedule_shape
from composer_bert.pretrain.progress import RunProgress
from tests.tiny_training import logged, tiny_loader, tiny_pretrain_config, tiny_rows, tiny_trainer

# (name, overrides, [(p, multiplier), ...]) with the config defaults unless overridden.
KEY_VALUES = [
    ("triangle", {}, [(0.0, 0.25), (0.375, 0.625), (0.75, 1.0), (0.875, 0.5), (1.0, 0.0)]),
    (
        "triangle",
        {"start_factor": 0.0, "peak_fraction": 0.5, "final_factor": 0.1},
        [(0.25, 0.5), (0.5, 1.0), (1.0, 0.1)],
    ),
    ("one_cycle", {}, [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 0.5), (1.0, 0.0)]),
    ("linear", {"warmup_fraction": 0.2}, [(0.0, 0.0), (0.1, 0.5), (0.2, 1.0), (0.6, 0.5), (1.0, 0.0)]),
    ("cosine", {"warmup_fraction": 0.2, "final_factor": 0.1}, [(0.1, 0.5), (0.2, 1.0), (0.6, 0.55), (1.0, 0.1)]),
    (
        "wsd",
        {"warmup_fraction": 0.1, "decay_fraction": 0.2},
        [(0.05, 0.5), (0.1, 1.0), (0.5, 1.0), (0.8, 1.0), (0.9, 0.5), (1.0, 0.0)],
    ),
    ("constant", {"warmup_fraction": 0.1}, [(0.0, 0.0), (0.05, 0.5), (0.1, 1.0), (1.0, 1.0)]),
    ("constant", {"warmup_fraction": 0.0}, [(0.0, 1.0), (0.5, 1.0)]),
]


@pytest.mark.parametrize(("name", "overrides", "points"), KEY_VALUES)
def test_schedule_values_at_key_fractions(name, overrides, points):
    shape = schedule_shape(SchedulerConfig(name=name, **overrides))
    for p, multiplier in points:
        assert shape(p) == pytest.approx(multiplier), (name, p)


def test_every_configurable_schedule_has_a_shape():
    names = SchedulerConfig.__dataclass_fields__["name"].metadata["choices"]
    assert {name for name, _, _ in KEY_VALUES} == set(names)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"warmup_fraction": -0.1}, "scheduler.warmup_fraction"),
        ({"peak_fraction": 1.5}, "scheduler.peak_fraction"),
        ({"final_factor": -1.0}, "scheduler.final_factor"),
        ({"name": "wsd", "warmup_fraction": 0.5, "decay_fraction": 0.6}, "scheduler.warmup_fraction"),
    ],
)
def test_bad_schedule_settings_name_the_key(overrides, key):
    with pytest.raises(UserError, match=key):
        tiny_pretrain_config(*(f"scheduler.{k}={v}" for k, v in overrides.items()))


def test_progress_follows_the_budget_when_there_is_one():
    budget = WallClockBudget(100.0)
    budget.load_state_dict({"train_seconds": 50.0, "budget_seconds": 100.0})
    scheduler = ProgressScheduler(schedule_shape(SchedulerConfig(name="one_cycle")), RunProgress(budget))
    assert scheduler(state=None) == pytest.approx(1.0)  # type: ignore[arg-type]  # p = 0.5, the cycle's peak
    budget.load_state_dict({"train_seconds": 150.0, "budget_seconds": 100.0})
    assert scheduler(state=None) == pytest.approx(0.0)  # type: ignore[arg-type]  # past the budget: clamped to p = 1


LR = 1.0
STEPS = 10


def schedule_trainer(folder, logger: InMemoryLogger, **kwargs) -> Trainer:
    torch.manual_seed(0)
    model = ComposerClassifier(nn.Linear(8, 2), num_classes=2)
    return tiny_trainer(
        model,
        tiny_loader(*tiny_rows(STEPS * 4, seed=0), batch_size=4),
        torch.optim.SGD(model.parameters(), lr=LR),
        f"{STEPS}ba",
        logger,
        schedulers=[build_scheduler(SchedulerConfig(name="triangle"), RunProgress())],
        step_schedulers_every_batch=True,
        callbacks=[LRMonitor()],
        save_folder=str(folder),
        save_interval="5ba",
        **kwargs,
    )


def test_multiplier_after_resume_equals_the_uninterrupted_one(tmp_path):
    straight = InMemoryLogger()
    schedule_trainer(tmp_path / "a", straight).fit()
    resumed = InMemoryLogger()
    schedule_trainer(tmp_path / "b", resumed, load_path=str(tmp_path / "a" / "ep0-ba5-rank0.pt")).fit()
    expected, got = logged(straight, "lr-SGD/group0"), logged(resumed, "lr-SGD/group0")
    # By steps, p after batch b is (b - 1) / STEPS (Composer evaluates schedulers before advancing the timestamp).
    shape = schedule_shape(SchedulerConfig(name="triangle"))
    assert expected == pytest.approx({b: LR * shape((b - 1) / STEPS) for b in range(1, STEPS + 1)})
    assert sorted(got) == list(range(6, STEPS + 1))
    assert got == {b: expected[b] for b in got}  # exactly
