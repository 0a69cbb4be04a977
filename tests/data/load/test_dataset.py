"""RowStreamingDataset beside other jobs on one machine: each registers its shared memory without colliding."""

from __future__ import annotations

import multiprocessing
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
