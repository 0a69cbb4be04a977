"""StreamingDataset's shared memory, made safe for several jobs on one machine and for long-lived processes.

streaming registers each dataset's blocks (locals, barrier, epoch, cache, shard states) under a prefix it picks
by scanning for the first free one, and releases them only at process exit. `one_job_registers_at_a_time`
serialises the pick across jobs; `release` (a finalizer of each dataset, `dataset.py`) gives the blocks, their
descriptors and their lock files back when the dataset is collected.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator

import torch
from composer.utils import dist
from streaming import StreamingDataset
from streaming.base.shared.memory import SharedMemory

SHM_LOCK_FILE = os.path.join(tempfile.gettempdir(), "composer_bert-streaming-shm.lock")


@contextlib.contextmanager
def one_job_registers_at_a_time() -> Iterator[None]:
    """Serialise StreamingDataset's shared-memory registration across the jobs on this machine.

    StreamingDataset looks for the first free shared-memory prefix and then creates it, so two jobs starting
    at once can pick the same one and one dies with `FileExistsError: '/000006_locals'`. Each job's local
    leader holds a machine-wide lock while its ranks register (the barrier makes them wait for it), so the
    next job looks only after this one's names exist. Without a usable lock file it registers as before.
    """
    lock_fd = None
    if dist.get_local_rank() == 0:
        with contextlib.suppress(OSError):
            lock_fd = os.open(SHM_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # as StreamingDataset itself
        dist.barrier()
    try:
        yield
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing the descriptor releases the lock


def shared_memory_of(dataset: StreamingDataset) -> list[SharedMemory]:
    """The streaming SharedMemory blocks a dataset holds (its locals, barrier, epoch, cache and shard-state blocks sit
    at most two attributes deep: `_shared_barrier._arr.shm`)."""
    found: list[SharedMemory] = []
    for value in vars(dataset).values():
        for inner in (value, *getattr(value, "__dict__", {}).values()):
            for block in (inner, *getattr(inner, "__dict__", {}).values()):
                if isinstance(block, SharedMemory) and block not in found:
                    found.append(block)
    return found


def release(owner_pid: int, blocks: list[SharedMemory], lock_files: list[str]) -> None:
    """What streaming releases only at process exit (its blocks stay registered with `atexit`, so each dataset a
    long-lived process makes keeps ~6 descriptors and its /dev/shm blocks for good, and its lock files stay in the
    temp folder for good), released when the dataset is collected instead. Only in the process that made the
    dataset: a forked DataLoader worker inherits this finalizer but not the right to unlink its parent's blocks."""
    if os.getpid() != owner_pid:
        return
    for block in blocks:
        atexit.unregister(block.cleanup)
        block.cleanup()  # close; unlink the blocks this process created
    for path in lock_files:
        with contextlib.suppress(OSError):
            os.remove(path)
