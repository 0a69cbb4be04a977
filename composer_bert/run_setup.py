"""What pretraining and GLUE finetuning set up the same way before Composer's Trainer: the device and the
split of a global batch across ranks. (The optimizer is `optim/optimizer.py`'s `build_optimizer` and gradient
clipping is `callbacks/grad_norm.py`'s `GradNormClip`, for both.)"""

from __future__ import annotations

import logging

import torch
from composer.devices import Device, DeviceCPU, DeviceGPU
from composer.utils import dist

from composer_bert.errors import UserError

log = logging.getLogger(__name__)


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
