"""Stop at the first non-finite training loss, before the optimizer step writes NaNs into the weights.

Raising from inside the batch (not `stop_training()`) matters: stopping gracefully would still save an
end-of-training checkpoint of the poisoned run. An exception leaves the last good checkpoint as the newest
one, so rerunning with autoresume (after lowering the learning rate, say) starts from clean weights.

Without synchronising the GPU: a check on the host before `optimizer.step()` would make the host wait for
the backward pass and leave the GPU idle while the step is launched. So the verdict is reached on the
device, acted on on the device, and only read on the host once it is there anyway:

1. Each microbatch's loss is folded into a device-side sum (Event.AFTER_LOSS).
2. At Event.AFTER_TRAIN_BATCH (after backward, the last event before the step) the sum becomes a flag,
   all-reduced so every rank agrees (NCCL does not block the host), and copied to pinned host memory
   without waiting. Every gradient is zeroed where the flag is set, on the device, so the step cannot
   write NaNs (SGD stays put; Adam-like optimizers take one finite step on their history, which the
   exception below keeps out of every checkpoint; a gradient norm logged for that batch reads 0).
3. At Event.BATCH_END the host reads its copy of the flag. Composer has read the batch's loss on the host
   by then (`loss.cpu().item()`, every batch), which already waited for the copy, so this read costs no
   synchronisation. A set flag raises here, before Event.BATCH_CHECKPOINT saves anything of the batch.
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


class HostCopy:
    """A device tensor's value on its way to host memory: `value()` later, without waiting for newer work."""

    def __init__(self, tensor: torch.Tensor, buffer: torch.Tensor | None = None) -> None:
        self.ready: torch.cuda.Event | None = None
        if tensor.is_cuda:
            self.host = buffer if buffer is not None else torch.empty_like(tensor, device="cpu").pin_memory()
            self.host.copy_(tensor, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:
            self.host = tensor.detach().to("cpu", copy=True)

    def value(self) -> torch.Tensor:
        if self.ready is not None:
            self.ready.synchronize()  # waits only for the copy, recorded before the optimizer step
        return self.host


class NaNGuard(Callback):
    """Raise `NonFiniteLossError` at the end of the first batch with a non-finite loss; that batch's step
    changes nothing (its gradients are zeroed on the device) and no checkpoint is written after it."""

    def __init__(self) -> None:
        self._loss_sum: torch.Tensor | None = None
        self._flag: HostCopy | None = None
        self._pinned: torch.Tensor | None = None  # the flag's host buffer, reused batch after batch

    def before_train_batch(self, state: State, logger: Logger) -> None:
        self._loss_sum, self._flag = None, None

    def after_loss(self, state: State, logger: Logger) -> None:
        for tensor in _loss_tensors(state.loss):
            term = tensor.detach().float().sum()
            self._loss_sum = term if self._loss_sum is None else self._loss_sum + term

    def after_train_batch(self, state: State, logger: Logger) -> None:
        if self._loss_sum is None:
            return
        bad = (~torch.isfinite(self._loss_sum)).to(torch.int32).reshape(1)
        dist.all_reduce(bad, reduce_operation="MAX")
        self._flag = HostCopy(bad, self._pinned)
        self._pinned = self._flag.host if bad.is_cuda else None
        skip = bad.reshape(()).bool()
        for param in state.model.parameters():
            if param.grad is not None:
                grad = param.grad.to_local() if hasattr(param.grad, "to_local") else param.grad  # FSDP2 DTensor
                grad.masked_fill_(skip, 0.0)

    def batch_end(self, state: State, logger: Logger) -> None:
        if self._flag is None or not self._flag.value().item():
            return
        done = int(state.timestamp.batch) - 1  # BATCH_END: the timestamp already counts this batch
        loss = "n/a" if self._loss_sum is None else self._loss_sum.item()
        raise NonFiniteLossError(
            f"training loss is not finite (this rank: {loss}) in training batch {done + 1} "
            f"(after {done} completed batches, epoch {int(state.timestamp.epoch)}); its optimizer step was "
            "neutralised and no checkpoint includes it, so the last checkpoint is clean: resume from it with a "
            "lower optimizer.lr or grad_clip_norm"
        )
