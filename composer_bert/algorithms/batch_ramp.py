"""Batch-size ramp (Cramming): the effective global batch grows linearly over the first part of the budget.

Every Composer batch keeps the dataloader's global batch size; the ramp makes the optimizer step only every
k batches, on the mean of their gradients, so the effective batch is k times larger. k follows the run's
elapsed fraction p (wall clock with a budget, else `max_duration`), so it needs no step count up front.

How it skips steps without wrapping the optimizer: on Event.AFTER_TRAIN_BATCH (after backward and fp16
unscaling, before `optimizer.step()`) a batch that does not close its window moves its gradients into a
running sum and leaves every `.grad` None. PyTorch optimizers (and Composer's decoupled ones) skip
parameters without a gradient, so that step changes nothing, and Composer's next `zero_grad` has nothing
to clear. The batch that closes the window puts the window's mean gradient back into `.grad`; callbacks run
after algorithms, so gradient clipping and the logged gradient norm see only that accumulated gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from composer.core import Algorithm, Event, Precision, State
from composer.loggers import Logger
from torch.nn.parallel import DistributedDataParallel

from composer_bert.errors import UserError
from composer_bert.run.parallelism import FSDP_REFUSAL

EFFECTIVE_BATCH_KEY = "trainer/effective_batch_size"


class BatchRamp(Algorithm):
    """Accumulate gradients over k Composer batches per optimizer step, k growing with the run's progress.

    The effective global batch goes linearly from `start_batch_size` (the dataloader's global batch) to
    `final_batch_size` over the first `ramp_fraction` of the run; k = round(effective / start) is fixed when
    a window opens. Logs `trainer/effective_batch_size` (k times the global batch) every batch.

    Resume: the window size, the number of batches already in it and their gradient sum are in the
    state_dict, so a checkpoint saved mid-window resumes exactly where the uninterrupted run would be. Such a
    checkpoint holds one extra copy of the gradients. A window still open when training ends is dropped.
    Under fp16, a batch whose gradients overflow is dropped from its window, as GradScaler drops its step.
    Single device and DDP only: under FSDP each rank would hold gradient shards the checkpoint cannot hold
    (FSDP_REFUSAL below; `parallelism.py` refuses the pair when the config is loaded).
    Arguments come from a validated `BatchRampConfig` (`algorithms/config.py` and `PretrainConfig.check`).
    """

    def __init__(
        self,
        start_batch_size: int,
        final_batch_size: int,
        ramp_fraction: float,
        progress: Callable[[State], float],
    ):
        self.start_batch_size = start_batch_size
        self.final_batch_size = final_batch_size
        self.ramp_fraction = ramp_fraction
        self.progress = progress
        self._window = 1  # k: batches per optimizer step in the current window
        self._accumulated = 0  # batches of the current window already summed
        self._grad_sum: dict[str, torch.Tensor] = {}  # parameter name -> sum of the window's batch gradients

    def __repr__(self) -> str:
        sizes = f"start_batch_size={self.start_batch_size}, final_batch_size={self.final_batch_size}"
        return f"BatchRamp({sizes}, ramp_fraction={self.ramp_fraction})"

    def window_size(self, p: float) -> int:
        """k at elapsed fraction p: round(effective batch / start batch), at least 1."""
        ramp = min(max(p, 0.0) / self.ramp_fraction, 1.0)
        effective = self.start_batch_size + (self.final_batch_size - self.start_batch_size) * ramp
        return max(1, round(effective / self.start_batch_size))

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_TRAIN_BATCH)

    def apply(self, event: Event, state: State, logger: Logger) -> int | None:
        if event == Event.FIT_START:
            if state.fsdp_enabled:
                raise UserError(FSDP_REFUSAL)
            return None
        if self._accumulated == 0:
            self._window = self.window_size(self.progress(state))
        logger.log_metrics({EFFECTIVE_BATCH_KEY: self._window * self.start_batch_size})

        params = {name: p for name, p in _named_parameters(state) if p.grad is not None}
        if state.precision == Precision.AMP_FP16 and not _all_finite(params.values()):
            _drop_grads(params.values())  # GradScaler skips this step; keep the window open
            return None
        self._accumulated += 1
        if self._accumulated < self._window:
            self._add_to_sum(params)
            _drop_grads(params.values())
            return None
        if self._window > 1:
            self._put_mean(state)
        self._accumulated = 0
        return None

    def _add_to_sum(self, params: dict[str, torch.nn.Parameter]) -> None:
        for name, param in params.items():
            grad = param.grad.detach()
            partial = self._grad_sum.get(name)
            if partial is None:
                self._grad_sum[name] = grad.clone()
            else:
                self._grad_sum[name] = partial.to(grad.device).add_(grad)

    def _put_mean(self, state: State) -> None:
        """Close the window: `.grad` becomes the mean over its k batches, for the optimizer step."""
        by_name = dict(_named_parameters(state))
        for name, partial in self._grad_sum.items():
            param = by_name[name]
            if param.grad is None:  # a parameter this batch did not reach
                param.grad = partial.to(param.device)
            else:
                param.grad.add_(partial.to(param.grad.device))
        for param in by_name.values():
            if param.grad is not None:
                param.grad.div_(self._window)
        self._grad_sum.clear()

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "window": self._window,
            "accumulated": self._accumulated,
            "grad_sum": dict(self._grad_sum),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._window = int(state["window"])
        self._accumulated = int(state["accumulated"])
        self._grad_sum = dict(state["grad_sum"])  # moved to the gradients' device when next used


def _named_parameters(state: State) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """Parameter names without DDP's 'module.' prefix, so a checkpoint from N ranks resumes on one."""
    model = state.model.module if isinstance(state.model, DistributedDataParallel) else state.model
    return model.named_parameters()


def _all_finite(params: Iterable[torch.nn.Parameter]) -> bool:
    grads = [p.grad for p in params]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _drop_grads(params: Iterable[torch.nn.Parameter]) -> None:
    for param in params:
        param.grad = None
