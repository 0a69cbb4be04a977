"""Stop at the first non-finite training loss, before the optimizer step writes NaNs into the weights.

Raising from inside the batch (not `stop_training()`) matters: stopping gracefully would still save an
end-of-training checkpoint of the poisoned run. An exception leaves the last good checkpoint as the newest
one, so rerunning with autoresume (after lowering the learning rate, say) starts from clean weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from composer_bert.errors import UserError


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the message names the batch."""


def _loss_tensors(loss: object) -> list[torch.Tensor]:
    if isinstance(loss, torch.Tensor):
        return [loss]
    if isinstance(loss, Mapping):
        return [t for t in loss.values() if isinstance(t, torch.Tensor)]
    if isinstance(loss, Sequence):
        return [t for t in loss if isinstance(t, torch.Tensor)]
    return []


class NaNGuard(Callback):
    """Check every microbatch's loss; raise `NonFiniteLossError` before the optimizer step if any is not finite.

    Each microbatch (Event.AFTER_LOSS) folds its loss into a device-side sum without synchronizing; the one
    host sync per batch happens at Event.AFTER_TRAIN_BATCH, after backward and before `optimizer.step()`.
    The flag is all-reduced so every rank raises at the same batch instead of the others hanging.
    """

    def __init__(self) -> None:
        self._loss_sum: torch.Tensor | None = None

    def before_train_batch(self, state: State, logger: Logger) -> None:
        self._loss_sum = None

    def after_loss(self, state: State, logger: Logger) -> None:
        for tensor in _loss_tensors(state.loss):
            term = tensor.detach().float().sum()
            self._loss_sum = term if self._loss_sum is None else self._loss_sum + term

    def after_train_batch(self, state: State, logger: Logger) -> None:
        if self._loss_sum is None:
            return
        bad = (~torch.isfinite(self._loss_sum)).to(torch.int32).reshape(1)
        dist.all_reduce(bad, reduce_operation="MAX")
        if bad.item():
            done = int(state.timestamp.batch)
            raise NonFiniteLossError(
                f"training loss is not finite (this rank: {self._loss_sum.item()}) in training batch {done + 1} "
                f"(after {done} completed batches, epoch {int(state.timestamp.epoch)}); stopped before the optimizer "
                "step, so the last checkpoint is clean: resume from it with a lower optimizer.lr or grad_clip_norm"
            )
