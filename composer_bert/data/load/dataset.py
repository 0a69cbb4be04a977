"""A StreamingDataset of token rows that knows its epoch, and the DataLoader that widens the collated batches
(collators.py: masked batches for MLM, next-token batches for a causal LM) into the model's.

Iterating the dataset yields (sample id, epoch) pairs in StreamingDataset's deterministic order; the
collate reads the batch's rows at once and masks them from those pairs (masking.py), so a sample's mask
never depends on which rank, worker or resumed run loaded it. Resumption is StreamingDataset's own
`state_dict`/`load_state_dict`, which Composer calls when it checkpoints and restores a run.

Batches are {input_ids, labels, masked_positions} with no attention mask: rows are packed to full
length, so a mask would be all ones, and without one the model needs no check of it (a check would read
the mask on the host every step). `masked_positions` has a fixed width per run (masking.py), so batch
shapes never change and a compiled model never recompiles.

Speed (one worker must deliver 50k sequences/s; StreamingDataset's own path manages ~6k here):
rows come from a memory map of each shard, gathered a batch at a time, instead of `get_item`, which opens
the shard file for every sample; and once every shard is on disk (local data, or a fully cached remote
without cache_limit) the per-sample download/readiness threads are skipped: they have nothing to wait
for, but would still take the GIL for every sample.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from streaming import StreamingDataset
from streaming.base.constant import TICK
from streaming.base.dataset import _Iterator, _ShardState
from torch.utils.data import DataLoader

from composer_bert.data.contract import SHARD_HASH
from composer_bert.data.load.shard_checks import REBUILD, check_shard_file, shard_file
from composer_bert.data.load.shared_memory import one_job_registers_at_a_time, release, shared_memory_of
from composer_bert.errors import UserError
from composer_bert.run.remote import store_problem

MAX_MAPPED_SHARDS = 256  # per process; bounds open file handles when a dataset has thousands of shards
class MappedShard:
    """Syscall-free reads of one MDS shard file whose records all have one size (rows of one length and dtype).

    MDS raw file layout: [num_samples: u32][offsets: u32 x (num_samples + 1)][records], and an `ndarray`
    column keeps its values at the end of the record, so with a lone `input_ids` column a record's tail is
    its row. Equal-size records make the rows one strided [num_samples, row_bytes] view: a batch is a
    single gather.
    """

    def __init__(self, rows: np.ndarray, dtype: np.dtype) -> None:
        self._rows = rows
        self.dtype = dtype

    @classmethod
    def open(cls, path: str, dtype: np.dtype, row_len: int) -> MappedShard | None:
        """Map the shard file; None unless its records have one size that holds a row (else not one row each)."""
        with open(path, "rb") as file:
            buffer = np.frombuffer(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
        num_samples = int(buffer[:4].view(np.uint32)[0])
        bounds = buffer[4 : 8 + 4 * num_samples].view(np.uint32).astype(np.int64)  # record i: bounds[i]..bounds[i+1]
        record_sizes = np.diff(bounds)
        row_bytes = row_len * dtype.itemsize
        if num_samples == 0 or np.any(record_sizes != record_sizes[0]) or record_sizes[0] < row_bytes:
            return None
        first_row = buffer[bounds[1] - row_bytes :]
        rows = np.lib.stride_tricks.as_strided(
            first_row, shape=(num_samples, row_bytes), strides=(int(record_sizes[0]), 1), writeable=False
        )
        return cls(rows, dtype)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """[len(indices), row_len] copy of the rows at these shard-relative indices."""
        return self._rows[indices].view(self.dtype)


class RowStreamingDataset(StreamingDataset):
    """StreamingDataset over MDS shards with an `input_ids` column; iteration yields (sample_id, epoch).

    `rows(sample_ids)` reads the tokens. `remask_each_epoch=False` pins the reported epoch to 0 (for
    evaluation: every eval pass sees the same masks, so eval losses are comparable). All other keyword
    arguments go to StreamingDataset.
    """

    def __init__(self, *, remask_each_epoch: bool = True, **streaming_kwargs: Any) -> None:
        with one_job_registers_at_a_time():
            super().__init__(**streaming_kwargs)
        self._blocks = shared_memory_of(self)  # with the resume block once a state dict is loaded
        created_here = bool(self._locals_shm.created_shms)  # the local leader's: it made the prefix and its locks
        lock_files = [self._shared_barrier.filelock_path, self._cache_filelock_path] if created_here else []
        weakref.finalize(self, release, os.getpid(), self._blocks, lock_files)
        self.remask_each_epoch = remask_each_epoch
        self.mask_epoch = 0  # epoch of the iteration in progress in this process (each worker has its own copy)
        # shard id -> its map, or None where the fast path does not apply (not MDS, or not a lone tail column).
        self._mapped_shards: OrderedDict[int, MappedShard | None] = OrderedDict()
        self._shards_on_disk = False  # sticky once true: without cache_limit nothing is ever evicted
        self._first_sample_of_shard = np.asarray(self.sample_offset_per_shard, dtype=np.int64)
        self._download_error: str | None = None  # why this process's download thread stopped, as one line

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the maps (spawned DataLoader workers map shards themselves) and without the blocks to
        release (a spawned worker attaches its own, which streaming releases when it exits)."""
        state = self.__dict__.copy()
        state["_mapped_shards"] = OrderedDict()
        state["_blocks"] = []
        return state

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """streaming's; the resume block it makes is released with the dataset's other blocks."""
        super().load_state_dict(obj)
        resume = getattr(self, "_resume_shm", None)
        if resume is not None and resume not in self._blocks:
            self._blocks.append(resume)

    def _resume_incr_epoch(self) -> tuple[int, int]:
        """Record the epoch StreamingDataset settles on at the start of `__iter__` (from its resume state, if any).

        StreamingDataset picks the epoch here, in each worker, from shared memory or a loaded state dict,
        so this is the one place that knows it for sure, resumed runs included.
        """
        epoch, sample_in_epoch = super()._resume_incr_epoch()
        if self.remask_each_epoch:
            self.mask_epoch = epoch
        self._shards_on_disk = self._shards_on_disk or self._every_shard_on_disk()
        return epoch, sample_in_epoch

    def _every_shard_on_disk(self) -> bool:
        """Whether every shard is present, uncompressed, and can't be evicted: then there is nothing to prefetch."""
        if self.cache_limit or not np.all(self._shard_states.numpy() == _ShardState.LOCAL):
            return False
        return all(os.path.isfile(os.path.join(s.dirname, s.split, s.file_pairs[0][0].basename)) for s in self.shards)

    def _prepare_thread(self, it: _Iterator) -> None:
        if not self._shards_on_disk:
            return self._recording_errors(super()._prepare_thread, it)
        it.prepare_index = it.total
        it.on_exit()

    def on_exception(self, future: Any) -> None:
        """Stop the other threads on a failed download without streaming's re-raise in the callback thread, which
        only prints a traceback; `__iter__` raises the error as one line instead."""
        if future.exception() is not None:
            self._event.set()

    def __iter__(self) -> Iterator[int]:
        """StreamingDataset's iteration; a download that failed in its background thread (it would end the epoch
        early, silently) raises here as one UserError."""
        self._download_error = None
        yield from super().__iter__()
        if self._download_error is not None:
            raise UserError(self._download_error)

    def _ready_thread(self, it: _Iterator) -> None:
        if not self._shards_on_disk:
            return self._recording_errors(super()._ready_thread, it)
        it.ready_index = it.total
        it.on_exit()

    def _recording_errors(self, thread: Any, it: _Iterator) -> None:
        """Run one of streaming's download threads (both download); its error is kept for __iter__ to raise, as
        streaming would only log it and end the epoch early."""
        try:
            thread(it)
        except Exception as err:
            it.on_exit()  # streaming counts only threads that end normally: __iter__'s it.exit() would wait for ever
            if self._download_error is None:
                self._download_error = download_problem(err, self) or f"shard download failed: {(str(err).splitlines() or [type(err).__name__])[0]}"
            raise

    def prepare_shard(self, shard_id: int, blocking: bool = True) -> None:
        """streaming's, except that waiting for a shard another thread is downloading ends when that download fails:
        streaming leaves a failed shard PREPARING and its blocking wait would spin for ever (a hung endpoint)."""
        while blocking and self._shard_states[shard_id] == _ShardState.PREPARING:
            if self._download_error is not None or (hasattr(self, "_event") and self._event.is_set()):
                raise UserError(self._download_error or "a background shard download failed; see the log above")
            time.sleep(TICK)
        super().prepare_shard(shard_id, blocking)

    def __getitem__(self, sample_id: int) -> tuple[int, int]:
        """(sample id, epoch): all the collate needs; the rows are read a batch at a time by `rows`."""
        return int(sample_id), self.mask_epoch

    def rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """The token rows of these global sample ids, [len(sample_ids), seq_len]."""
        shard_ids = np.searchsorted(self._first_sample_of_shard, sample_ids, side="right") - 1
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for shard_id in np.unique(shard_ids).tolist():
            selected = np.flatnonzero(shard_ids == shard_id)
            parts.append((selected, self._shard_rows(shard_id, sample_ids[selected])))
        if len(parts) == 1:
            return parts[0][1]
        out = np.empty((len(sample_ids), *parts[0][1].shape[1:]), dtype=parts[0][1].dtype)
        for selected, rows in parts:
            if rows.shape[1:] != out.shape[1:] or rows.dtype != out.dtype:
                raise ValueError(
                    f"shards disagree on rows: {rows.shape[1:]} {rows.dtype} vs {out.shape[1:]} {out.dtype}; "
                    "rebuild them"
                )
            out[selected] = rows
        return out

    def _shard_rows(self, shard_id: int, sample_ids: np.ndarray) -> np.ndarray:
        if shard_id not in self._mapped_shards:
            # StreamingDataset's reader first: it downloads the shard if needed, and checks the map against it.
            try:
                first_row = self.get_item(int(sample_ids[0]))["input_ids"]
            except UserError:
                raise
            except Exception as err:
                if self._download_error is not None:  # the background download failed first: that is the cause
                    raise UserError(self._download_error) from None
                problem = download_problem(err, self)
                if problem is not None:
                    raise UserError(problem) from None
                self._check_shard(shard_id)  # a damaged file is the likely cause: name it
                raise
            self._check_shard(shard_id)  # e.g. downloaded since the loader checked what was on disk
            self._map_shard(shard_id, int(sample_ids[0]) - self._first_sample_of_shard[shard_id], first_row)
        mapped = self._mapped_shards[shard_id]
        if mapped is None:
            return np.stack([self.get_item(int(sample_id))["input_ids"] for sample_id in sample_ids])
        return mapped.rows(sample_ids - self._first_sample_of_shard[shard_id])

    def _check_shard(self, shard_id: int) -> None:
        """UserError naming the shard's file if it is not what the index says (not with a cache_limit: evictions race)."""
        if not self.cache_limit:
            shard = self.shards[shard_id]
            check_shard_file(os.path.join(shard.dirname, shard.split), shard_file(shard))

    def _map_shard(self, shard_id: int, index: int, row: np.ndarray) -> None:
        """Map the shard if it is an MDS file of one `input_ids` column of equal rows whose map reproduces `row`.

        Never with a cache_limit: evicted shards would stay on disk while mapped.
        """
        shard = self.shards[shard_id]
        mapped = None
        if not self.cache_limit and row.ndim == 1 and getattr(shard, "column_names", None) == ["input_ids"]:
            path = os.path.join(shard.dirname, shard.split, shard.raw_data.basename)
            if os.path.isfile(path):
                mapped = MappedShard.open(path, row.dtype, len(row))
                if mapped is not None and not np.array_equal(mapped.rows(np.array([index]))[0], row):
                    mapped = None
        self._mapped_shards[shard_id] = mapped
        if len(self._mapped_shards) > MAX_MAPPED_SHARDS:
            self._mapped_shards.popitem(last=False)  # the map closes once no array refers to it


def download_problem(err: BaseException, dataset: StreamingDataset | None = None) -> str | None:
    """One line for a shard that could not be downloaded, or that failed its hash check (named by its cache path;
    that bad copy is deleted, so the next run downloads it again); None for other errors."""
    message = str(err)
    if isinstance(err, ValueError) and message.startswith("Checksum failure: "):
        path = message.removeprefix("Checksum failure: ").strip()
        try:
            _check_downloaded(dataset, path)  # a truncated or damaged header says more than a hash
        except UserError as damaged:
            return str(damaged)
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
        return (
            f"shard '{path}' does not match the {SHARD_HASH} hash in its index.json after download from the remote "
            f"(damaged there or in transit; the copy was deleted from the cache); {REBUILD}, and upload them again"
        )
    return store_problem(err, "a shard of data.remote")


def _check_downloaded(dataset: StreamingDataset | None, path: str) -> None:
    for shard in dataset.shards if dataset is not None else []:
        split_dir = os.path.join(shard.dirname, shard.split)
        if os.path.join(split_dir, shard_file(shard).basename) == path:
            check_shard_file(split_dir, shard_file(shard))


def model_batch(compact: dict[str, torch.Tensor], pin_memory: bool = False) -> dict[str, torch.Tensor]:
    """The batch the model gets: each entry of the compact one (MLM: `input_ids`, `labels` (original id where
    masked, -100 elsewhere) and `masked_positions`; causal: `input_ids` and next-token `labels`), all int64
    views of one (optionally pinned) storage. No attention_mask: rows are full.
    """
    wide = torch.empty((sum(t.numel() for t in compact.values()),), dtype=torch.int64, pin_memory=pin_memory)
    batch, start = {}, 0
    for key, tensor in compact.items():
        batch[key] = wide[start : start + tensor.numel()].view(tensor.shape)
        batch[key].copy_(tensor)
        start += tensor.numel()
    return batch


class RowDataLoader(DataLoader):
    """A DataLoader over RowStreamingDataset that yields model batches (see `model_batch`).

    Workers produce compact batches (`collators.py`); this widens them in the consuming process, and pins
    the result itself when `pin_memory_batches` is set (torch's own pin_memory would pin the compact form).
    """

    def __init__(self, *args: Any, pin_memory_batches: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pin_memory_batches = pin_memory_batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:  # type: ignore[override]
        try:
            for compact in super().__iter__():
                yield model_batch(compact, self.pin_memory_batches)
        except UserError as err:
            raise UserError(_worker_message(str(err))) from None


def _worker_message(message: str) -> str:
    """The one-line message of a UserError raised in a DataLoader worker (torch re-raises it with a traceback)."""
    prefix = f"{UserError.__module__}.{UserError.__qualname__}: "
    last = message.rstrip().splitlines()[-1] if message.strip() else message
    return last[len(prefix) :] if last.startswith(prefix) else message
