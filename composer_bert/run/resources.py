"""What a pretraining run cost besides time: peak memory, and on NVIDIA GPUs the energy NVML counted.

Peak memory is this process's: on a GPU, `torch.cuda.max_memory_allocated` (tensors, not the caching
allocator's reserve); on the CPU, the peak resident set size from `getrusage`. Energy is the difference of
NVML's total-energy counter (millijoules since the driver loaded) between the start and the end of the
run, summed over every GPU of this node; without NVML (no `nvidia-ml-py`, no driver, or a GPU that does
not count energy) it is None and the summary says n/a.
"""

from __future__ import annotations

import logging
import resource
import sys
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

JOULES_PER_KWH = 3.6e6


@dataclass
class PeakMemory:
    gib: float
    of: str  # what was measured, for the summary's row label


def peak_memory() -> PeakMemory:
    """This process's peak memory so far: GPU tensors when training on a GPU, else resident set size."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return PeakMemory(torch.cuda.max_memory_allocated() / 2**30, "GPU, max allocated")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return PeakMemory(rss / (2**30 if sys.platform == "darwin" else 2**20), "CPU, peak RSS")


class EnergyMeter:
    """NVML's energy counters of all GPUs on this node, read at construction and again by `kwh()`."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._start: list[int] | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._start = self._read()
        except Exception as err:  # ImportError, NVMLError (no driver, not supported): no energy figure
            log.debug("no NVML energy counter: %s", err)
            self._start = None

    def _read(self) -> list[int]:
        nvml = self._nvml
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            raise RuntimeError("NVML sees no GPU")
        return [nvml.nvmlDeviceGetTotalEnergyConsumption(nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]

    def kwh(self) -> float | None:
        """kWh used by this node's GPUs since construction, or None without NVML energy counters."""
        if self._start is None:
            return None
        try:
            end = self._read()
        except Exception as err:
            log.debug("NVML energy counter unreadable at the end: %s", err)
            return None
        if len(end) != len(self._start):
            return None
        millijoules = sum(after - before for before, after in zip(self._start, end, strict=True))
        return millijoules / 1000 / JOULES_PER_KWH

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a library that is gone is not worth a failed run
                pass
            self._nvml = None
