"""What pretraining and GLUE finetuning set up the same way before Composer's Trainer: the device, the
split of a global batch across ranks, and decisions made once on rank 0 and shared with every rank. (The optimizer is `optim/optimizer.py`'s `build_optimizer` and gradient
clipping is `callbacks/grad_norm.py`'s `GradNormClip`, for both.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from composer.devices import Device, DeviceCPU, DeviceGPU
from composer.utils import dist

from composer_bert.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")


def pick_device() -> Device:
    """The GPU when there is one (one per rank under the launcher), else the CPU."""
    return DeviceGPU() if torch.cuda.is_available() else DeviceCPU()


def per_device_batch(global_batch: int, key: str) -> int:
    """This rank's share of a global batch; config key `key` must divide evenly across ranks."""
    world = dist.get_world_size()
    if global_batch % world:
        raise UserError(f"{key} {global_batch} is not divisible by the {world} processes; pick a multiple of {world}")
    return global_batch // world


def microbatch_size(setting: int | str, device: Device, device_batch: int) -> int | str:
    """Composer's 'auto' microbatching works by catching CUDA out-of-memory errors; elsewhere use the device batch."""
    if setting == "auto" and device.name != "gpu":
        log.warning("device_train_microbatch_size: auto microbatching needs a GPU; using %d", device_batch)
        return device_batch
    return setting


def on_rank_zero(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` on global rank 0 and hand its result, or its UserError, to every rank.

    Without this, a check that fails on rank 0 leaves the other ranks waiting in the Trainer's first
    collective until `dist_timeout`, instead of all of them stopping with the same one-line error.
    """
    outcome: list[Any] = [None]
    if dist.get_global_rank() == 0:
        try:
            outcome = [(True, fn(*args))]
        except UserError as err:
            outcome = [(False, str(err))]
    dist.broadcast_object_list(outcome, src=0)
    ok, value = outcome[0]
    if not ok:
        raise UserError(value)
    return value
