"""RowStreamingDataset beside other jobs on one machine: each registers its shared memory without colliding."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
from streaming import Stream

from composer_bert.data.load.dataset import RowStreamingDataset
from tests.data.load.test_loader import random_rows, write_shard_root

JOBS = 4
OPENS_PER_JOB = 8


def _open_repeatedly(root: str, start_together, failures) -> None:
    try:
        start_together.wait(timeout=300)  # every job has imported: the opens below race for real
        for _ in range(OPENS_PER_JOB):
            dataset = RowStreamingDataset(streams=[Stream(local=root, split="train")], batch_size=2, shuffle=False)
            assert dataset.num_samples == 64
            del dataset
    except Exception as err:  # reported to the test, which names it
        failures.put(f"{type(err).__name__}: {err}")


def test_jobs_opening_datasets_at_once_each_get_their_own_shared_memory(tmp_path: Path) -> None:
    """StreamingDataset alone picks a free prefix, then creates it: jobs that start together collide
    (FileExistsError '/000006_locals'; 4 jobs x 8 opens collided in every try without the lock).

    The jobs are not forked from the pytest worker: a fork of a worker that has run other tests copies locks its
    other threads held, and a job could hang on one (CI saw a job end nonzero, reporting nothing). They fork from
    a fresh server process that has imported the dataset module once (spawning each costs its own imports).
    """
    root = write_shard_root(tmp_path / "shards", {"train": random_rows(64, seed=0).astype(np.uint16)})
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([RowStreamingDataset.__module__])
    start_together, failures = context.Barrier(JOBS), context.Queue()
    jobs = [context.Process(target=_open_repeatedly, args=(str(root), start_together, failures)) for _ in range(JOBS)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=240)
    hung = [job for job in jobs if job.exitcode is None]
    for job in hung:
        job.kill()
    reported = [failures.get() for _ in range(failures.qsize())] if not failures.empty() else []
    assert reported == [] and [job.exitcode for job in jobs] == [0] * JOBS, (reported, [job.exitcode for job in jobs])


def _descriptors() -> list[str]:
    return sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _readable(fd))


def _readable(fd: str) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
        return True
    except OSError:
        return False


def test_a_dataset_releases_its_shared_memory_and_lock_files_when_collected(tmp_path: Path) -> None:
    """streaming keeps every block a dataset made registered with atexit: a long-lived process (a pytest worker,
    a notebook) making datasets ran out of descriptors ('Too many open files' after ~20k in the suite). Each
    dataset, iterated or given a state dict, gives back its descriptors, /dev/shm blocks and lock files. (Not the
    one a resumed dataset's `__iter__` opens to read the state back: streaming keeps it in a local. Nor, while
    streaming scans for a free prefix, the blocks of other processes' datasets it opens to compare.)"""
    root = write_shard_root(tmp_path / "shards", {"train": random_rows(64, seed=0).astype(np.uint16)})
    for resumed in (False, True) * 3:
        dataset = RowStreamingDataset(streams=[Stream(local=str(root), split="train")], batch_size=2, shuffle=False)
        prefix = f"{dataset._shm_prefix_int:06d}_"
        if resumed:
            dataset.load_state_dict({"epoch": 0, "sample_in_epoch": 4, "num_canonical_nodes": 1, "shuffle_seed": 9})
        else:
            assert len(list(iter(dataset))) == 64
        held = _held(prefix)  # while alive: its blocks, and its barrier and cache lock files
        assert {"locals", "barrier", "shard_states"} <= held[0] and ("resume" in held[0]) == resumed, held
        assert held[1] <= {f"{prefix}barrier_filelock", f"{prefix}cache_filelock"}, held  # made when first used:
        assert resumed or f"{prefix}barrier_filelock" in held[1], held  # iterating takes the barrier
        if hasattr(dataset, "_executor"):  # its download threads joined: none of them holds the dataset any more
            dataset._executor.shutdown(wait=True)
        blocks = [shm for block in dataset._blocks for shm in (*block.created_shms, *block.opened_shms)]
        locks = {path: path.stat().st_ino for path in Path(tempfile.gettempdir()).glob(f"{prefix}*")}
        alive = weakref.ref(dataset)
        del dataset
        gc.collect()
        # Every block the dataset held is closed (its descriptor and mapping gone) and its lock files removed.
        # (Not the fd table by name: CI twice saw descriptors named like this dataset's blocks stay open after this
        # dataset's own were closed and its lock files removed, in a worker that had run half the suite; they were
        # not this dataset's objects, and the same loop alone, under load and with torch.distributed up, never
        # showed it. The message names what the table held, for the next reader.)
        unclosed = [shm.name for shm in blocks if shm._fd != -1 or shm._mmap is not None]
        assert alive() is None and unclosed == [], (unclosed, _held(prefix), _holders(alive))
        # removed (another job may pick the freed prefix and make its own files of the same names at once)
        assert not [path for path, inode in locks.items() if path.exists() and path.stat().st_ino == inode], locks


def _holders(alive: weakref.ref) -> list[str]:
    """What still refers to the dataset, if it was not collected: the failure message names it."""
    dataset = alive()
    if dataset is None:
        return ["(collected: its finalizer did not release the blocks)"]
    holders = [f"{type(r).__name__}: {str(r)[:200]}" for r in gc.get_referrers(dataset) if r is not locals()]
    return holders + [f"threads: {[t.name for t in threading.enumerate()]}"]


def _held(prefix: str) -> tuple[set[str], set[str]]:
    """(the /dev/shm blocks named `prefix`* this process holds a descriptor of, the temp folder's `prefix`* files)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    blocks = {t.split(prefix, 1)[1].split(" ")[0] for t in targets if f"/{prefix}" in t and t.startswith("/dev/shm/")}
    return blocks, {p.name for p in Path(tempfile.gettempdir()).glob(f"{prefix}*")}
