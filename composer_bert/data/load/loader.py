"""From the `data:` config and the run's opened `ShardSet` to a Composer DataSpec of batches for the model.

The trainer opens the shards once (`shard_set.open_shards`: the manifest read and checked, the model checked
against it) and builds one loader per split from that. The collate is the shards' objective's entry in
`objectives.py`: masked batches for MLM, next-token batches for a causal LM. Sample order is StreamingDataset's
elastic-deterministic order (batch_size = device batch) and masks are a function of (seed, epoch, sample id),
so a resumed run or one on another number of GPUs (same global batch) sees the very same batches.
"""

from __future__ import annotations

from typing import Any

import torch
from composer.core import DataSpec
from composer.utils import dist
from streaming import Stream

from composer_bert.data.contract import SHARD_HASH
from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.dataset import RowDataLoader, RowStreamingDataset
from composer_bert.data.load.shard_set import ShardSet
from composer_bert.errors import UserError
from composer_bert.objectives import objective
from composer_bert.run.remote import store_problem


def build_dataset(
    cfg: DataConfig, shards: ShardSet, *, split: str, device_batch_size: int, seed: int, shuffle: bool,
    remask_each_epoch: bool,
) -> RowStreamingDataset:
    """The StreamingDataset of `split` over every shard root; `batch_size` makes its order rank-count independent."""
    roots = shards.roots
    shards.check_split(split)
    streams = [
        Stream(
            local=root.local,
            remote=root.remote,
            split=split,
            proportion=root.proportion,
            download_timeout=cfg.download_timeout,
        )
        for root in roots
    ]
    shuffle_seed = seed if cfg.shuffle_seed is None else cfg.shuffle_seed
    if shuffle_seed < 0:
        raise UserError(
            f"shuffle seed {shuffle_seed} is negative; set data.shuffle_seed (or seed) to a non-negative integer"
        )
    try:
        dataset = RowStreamingDataset(
            remask_each_epoch=remask_each_epoch,
            streams=streams,
            batch_size=device_batch_size,
            shuffle=shuffle,
            shuffle_seed=shuffle_seed,
            shuffle_algo=cfg.shuffle_algo,
            shuffle_block_size=cfg.shuffle_block_size,
            num_canonical_nodes=cfg.num_canonical_nodes,
            predownload=cfg.predownload,
            cache_limit=cfg.cache_limit,
        )
    except (FileNotFoundError, ValueError) as err:  # StreamingDataset's checks of its arguments and of the remote
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot open the '{split}' shards: {reason}; check the data: settings") from None
    except Exception as err:  # the index download: boto3 and friends raise their own types
        where = " or ".join(str(root.remote) for root in roots if root.remote)
        problem = store_problem(err, f"the '{split}' shards of {where}") if where else None
        if problem is None:
            raise
        raise UserError(problem) from None
    _validate_downloads(dataset)
    return dataset


def _validate_downloads(dataset: RowStreamingDataset) -> None:
    """Check every shard downloaded from a remote against the hash its index.json records (shards built before
    hashes were recorded are taken as they come)."""
    if all(SHARD_HASH in shard.file_pairs[0][0].hashes for shard in dataset.shards):
        for stream in dataset.streams:
            stream.validate_hash = SHARD_HASH


def build_dataloader(
    cfg: DataConfig,
    shards: ShardSet,
    *,
    split: str,
    device_batch_size: int,
    seed: int,
    shuffle: bool | None = None,
    drop_last: bool = True,
) -> RowDataLoader:
    """A DataLoader of `split`'s batches in the shards' objective's format (batch.py), compact in workers and
    widened to int64 here.

    `shuffle=None` shuffles the train split per `data.shuffle` and leaves other splits in order. Masks are
    redrawn each epoch for the train split and fixed for the others, so every eval pass sees the same batches.
    `cfg` was validated with the recipe and `shards` checked when opened: neither is checked again here.
    """
    if not split:
        raise UserError("no data split given; set data.train_split / data.eval_split")
    if device_batch_size <= 0:
        raise UserError(f"device batch size is {device_batch_size}; it must be positive")
    is_train = split == cfg.train_split
    dataset = build_dataset(
        cfg,
        shards,
        split=split,
        device_batch_size=device_batch_size,
        seed=seed,
        shuffle=(cfg.shuffle and is_train) if shuffle is None else shuffle,
        remask_each_epoch=is_train,
    )
    if drop_last:
        _check_one_global_batch(dataset, split, device_batch_size)
    workers = cfg.num_workers
    collate = objective(shards.contract.objective).load("collator")(dataset, cfg, shards.contract, seed)
    return RowDataLoader(
        dataset,
        batch_size=device_batch_size,
        collate_fn=collate,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory_batches=cfg.pin_memory and torch.cuda.is_available(),
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        persistent_workers=cfg.persistent_workers and workers > 0,
    )


def _check_one_global_batch(dataset: RowStreamingDataset, split: str, device_batch_size: int) -> None:
    """Refuse a split with fewer rows than one global batch: with drop_last every epoch would be empty, forever."""
    world = dist.get_world_size()
    global_batch = device_batch_size * world
    if dataset.epoch_size < global_batch:
        raise UserError(
            f"the '{split}' split has {dataset.epoch_size} rows per epoch, fewer than one global batch of "
            f"{global_batch} ({device_batch_size} per device x {world} devices), so no batch could be drawn; "
            f"lower the global batch size (global_train_batch_size) to at most {dataset.epoch_size}, "
            "or build more data with data_prep/convert_dataset.py"
        )


def num_tokens_in_batch(batch: dict[str, torch.Tensor]) -> int:
    """Every position is a real token (rows are packed), so tokens = numel: what SpeedMonitor reports as tokens/s."""
    return int(batch["input_ids"].numel())


def num_samples_in_batch(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["input_ids"].shape[0])


def build_dataspec(cfg: DataConfig, shards: ShardSet, **loader_args: Any) -> DataSpec:
    """`build_dataloader(cfg, shards, **loader_args)` as a Composer DataSpec that counts samples and tokens."""
    dataloader = build_dataloader(cfg, shards, **loader_args)
    return DataSpec(
        dataloader, get_num_samples_in_batch=num_samples_in_batch, get_num_tokens_in_batch=num_tokens_in_batch
    )
