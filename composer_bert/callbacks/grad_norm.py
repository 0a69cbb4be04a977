"""The global gradient L2 norm *before* clipping, logged every few steps, and clipping by that norm.

Composer's OptimizerMonitor logs after the optimizer step (so after any clipping) and one metric per
parameter; GradientClipping clips without telling us the norm. Doing both in one place means one norm
computation per step, and the logged value is the one the clipping decision was made on.

Nothing is read on the host between logged steps: the norm and the clipping factor stay on the device
(`clip_grad_norm_` scales by min(1, max_norm / norm) without looking at it), and a logged step reads the
global and per-layer norms together, once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from torch.distributed.fsdp import FullyShardedDataParallel

GLOBAL_NORM_KEY = "l2_norm/grad/global"
LAYER_NORM_KEY = "l2_norm/grad/layer_{}"

# 'encoder.layers.3.attn.qkv.weight' -> 3 (also 'layer.3.', 'blocks.3.', 'h.3.'; DDP's 'module.' prefix is fine).
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers?|blocks?|h)\.(\d+)\.")


def layer_grad_norms(named_grads: list[tuple[str, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """L2 norm of the gradient of each numbered layer (parameters outside numbered layers are left out)."""
    squares: dict[int, list[torch.Tensor]] = defaultdict(list)
    for name, grad in named_grads:
        match = _LAYER_INDEX.search(name)
        if match:
            squares[int(match.group(1))].append(torch.linalg.vector_norm(grad.float()) ** 2)
    return {index: torch.stack(parts).sum().sqrt() for index, parts in sorted(squares.items())}


def _fsdp_root(model: torch.nn.Module) -> FullyShardedDataParallel | None:
    for module in model.modules():
        if isinstance(module, FullyShardedDataParallel) and module.check_is_root():
            return module
    return None


class GradNormClip(Callback):
    """Measure the global gradient norm, log it every `log_interval` batches, and clip to `max_norm`.

    Runs on `Event.AFTER_TRAIN_BATCH`, the one point where the gradient is complete and not yet used: after
    the backward of every microbatch (Composer accumulates microbatches into `.grad`), after DDP's all-reduce,
    after Composer unscales fp16 gradients, after algorithms (callbacks always run after them, so after
    BatchRamp has assembled an accumulated gradient), and before `optimizer.step()`.

    A batch on which no parameter has a gradient is one where BatchRamp is still accumulating: there is no
    step, so nothing is measured, clipped or logged. Logging happens at the first step in each window of
    `log_interval` batches (every `log_interval` batches without a ramp); 0 turns logging off.

    Under FSDP (v1) the root module's own `clip_grad_norm_` computes the norm across shards; per-layer norms
    are then skipped because each rank holds only shards of the layers. Arguments come from validated configs
    (`optimizer.grad_clip_norm`, `callbacks.grad_norm_interval`).
    """

    def __init__(self, max_norm: float | None, log_interval: int = 10, per_layer: bool = False):
        self.max_norm = max_norm
        self.log_interval = log_interval
        self.per_layer = per_layer
        self._last_logged_window = -1

    def after_train_batch(self, state: State, logger: Logger) -> None:
        named_grads = [(name, p.grad) for name, p in state.model.named_parameters() if p.grad is not None]
        if not named_grads:
            return
        window = int(state.timestamp.batch) // self.log_interval if self.log_interval else None
        log_now = window is not None and window != self._last_logged_window
        if self.max_norm is None and not log_now:
            return

        fsdp_root = _fsdp_root(state.model) if state.fsdp_enabled and state.fsdp_config_version == 1 else None
        layer_norms = layer_grad_norms(named_grads) if log_now and self.per_layer and fsdp_root is None else {}
        max_norm = float("inf") if self.max_norm is None else self.max_norm
        if fsdp_root is not None:
            total = fsdp_root.clip_grad_norm_(max_norm)
        elif self.max_norm is None:
            total = torch.nn.utils.get_total_norm([grad for _, grad in named_grads])
        else:
            params = [p for p in state.model.parameters() if p.grad is not None]
            total = torch.nn.utils.clip_grad_norm_(params, max_norm)

        if log_now:
            self._last_logged_window = window
            if hasattr(total, "full_tensor"):  # FSDP2 DTensor
                total = total.full_tensor()
            values = torch.stack([total.float(), *layer_norms.values()]).tolist()  # one device sync
            metrics = {GLOBAL_NORM_KEY: values[0]}
            metrics.update({LAYER_NORM_KEY.format(i): v for i, v in zip(layer_norms, values[1:], strict=True)})
            logger.log_metrics(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"last_logged_window": self._last_logged_window}  # a resumed run logs at the same batches

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_logged_window = int(state["last_logged_window"])
