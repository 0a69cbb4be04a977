"""A tiny classifier, its data and its Composer Trainer on CPU, for the tests of the training controls
(algorithms, callbacks, schedulers): real training loops that take a fraction of a second."""

from __future__ import annotations

import torch
from composer import Trainer
from composer.loggers import InMemoryLogger, LoggerDestination
from composer.models import ComposerClassifier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config

FEATURES = 8


class TinyNet(nn.Module):
    """Two numbered layers, so per-layer gradient norms have something to group."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(FEATURES, hidden), nn.Linear(hidden, 2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](torch.relu(self.layers[0](x)))


def tiny_classifier(hidden: int = 16) -> ComposerClassifier:
    """TinyNet as a two-class ComposerClassifier, initialised from seed 0."""
    torch.manual_seed(0)
    return ComposerClassifier(TinyNet(hidden), num_classes=2)


def tiny_rows(num_rows: int, seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`num_rows` random inputs (standard normal times `scale`) and 0/1 labels, from a generator seeded `seed`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_rows, FEATURES, generator=generator) * scale
    return x, torch.randint(0, 2, (num_rows,), generator=generator)


def tiny_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def tiny_trainer(
    model: ComposerClassifier,
    train_dataloader: DataLoader,
    optimizer: torch.optim.Optimizer,
    max_duration: str,
    logger: LoggerDestination,
    **kwargs,
) -> Trainer:
    """A quiet, seeded CPU Trainer logging to `logger`; `kwargs` (callbacks, algorithms, ...) go to the Trainer."""
    return Trainer(
        model=model,
        train_dataloader=train_dataloader,
        optimizers=optimizer,
        max_duration=max_duration,
        loggers=[logger],
        device="cpu",
        progress_bar=False,
        log_to_console=False,
        seed=0,
        **kwargs,
    )


def logged(logger: InMemoryLogger, key: str) -> dict[int, float]:
    """Batch -> value of everything logged under `key`."""
    return {int(timestamp.batch): value for timestamp, value in logger.data.get(key, [])}


def tiny_pretrain_config(*overrides: str, batch_size: int = 8) -> PretrainConfig:
    """The pretraining config with only what it requires set (and `overrides`): for checking its validation."""
    base = ["run_name=t", "max_duration=6ba", f"global_train_batch_size={batch_size}"]
    return load_config(PretrainConfig, overrides=[*base, *overrides])
