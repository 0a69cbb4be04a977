"""From the `data:` config to a Composer DataSpec of masked (or causal-LM) batches, refusing shards the model can't read.

The trainer calls `read_data_manifest` (to learn vocab_size, seq_len, special ids) and `build_mlm_dataspec`
once per split; with `objective="causal"` it yields next-token batches of shards built for a causal LM. Sample order is StreamingDataset's elastic-deterministic order (batch_size = device batch)
and masks are a function of (seed, epoch, sample id), so a resumed run or one on another number of GPUs
(same global batch) sees the very same batches.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
from composer.core import DataSpec
from composer.utils import dist
from streaming import Stream
from streaming.base.storage import CloudDownloader

from composer_bert.data.config import DataConfig
from composer_bert.data.manifest import (
    MANIFEST_NAME,
    check_compatible,
    check_loader_fields,
    check_objective,
    read_manifest,
    shard_objective,
)
from composer_bert.data.masking import MLMMasker
from composer_bert.data.mlm_dataset import CausalCollator, MLMCollator, MLMDataLoader, MLMStreamingDataset
from composer_bert.data.shard_checks import INDEX_NAME, check_split_shards
from composer_bert.errors import UserError
from composer_bert.schema import validate

_MUST_AGREE = (("tokenizer", "sha256"), ("tokenizer", "vocab_size"), ("tokenizer", "special_tokens"), ("seq_len",))
_OBJECTIVE_KEY = ("objective",)


@dataclass(frozen=True)
class ShardRoot:
    """One shard root: where it is read from (`local`, always set) and fetched from (`remote`, optional)."""

    name: str  # "data" for data.local/remote, else the stream's key in data.streams
    local: str
    remote: str | None
    proportion: float | None


def _cache_dir_for(remote: str) -> str:
    """Where a remote-only root is cached: a temp dir named after the remote, as StreamingDataset itself does."""
    return os.path.join(tempfile.gettempdir(), hashlib.blake2s(remote.encode("utf-8"), digest_size=16).hexdigest())


def shard_roots(cfg: DataConfig) -> list[ShardRoot]:
    """The roots a validated config names: data.local/remote, or each of data.streams."""
    if cfg.streams:
        named = [(f"data.streams.{name}", s.local, s.remote, s.proportion) for name, s in cfg.streams.items()]
    elif cfg.local or cfg.remote:
        named = [("data", cfg.local, cfg.remote, None)]
    else:
        raise UserError(
            "no shards configured; set data.local (a shard root from data_prep/convert_dataset.py), "
            "data.remote or data.streams"
        )
    return [
        ShardRoot(name, local or _cache_dir_for(remote), remote or None, proportion)
        for name, local, remote, proportion in named
    ]


def _fetch_manifest(root: ShardRoot, timeout: float) -> None:
    """Download `remote/manifest.json` into `local` unless it is cached there (atomically: ranks may race)."""
    local_path = os.path.join(root.local, MANIFEST_NAME)
    if root.remote is None or os.path.isfile(local_path):
        return
    os.makedirs(root.local, exist_ok=True)
    partial = f"{local_path}.{os.getpid()}.tmp"
    try:
        CloudDownloader.direct_download(os.path.join(root.remote, MANIFEST_NAME), partial, timeout)
    except Exception as err:  # each cloud client raises its own types; all mean "can't get it"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"cannot fetch {MANIFEST_NAME} from {root.name}.remote '{root.remote}' ({reason}); "
            "check the path and credentials"
        ) from None
    os.replace(partial, local_path)


def _root_manifest(root: ShardRoot, timeout: float) -> dict[str, Any]:
    if root.remote is None and not os.path.isdir(root.local):
        raise UserError(
            f"{root.name}.local '{root.local}' does not exist; build shards with data_prep/convert_dataset.py "
            f"or set {root.name}.remote"
        )
    _fetch_manifest(root, timeout)
    manifest = read_manifest(root.local)
    check_loader_fields(manifest, os.path.join(root.local, MANIFEST_NAME))
    return manifest


def _field(manifest: dict[str, Any], path: tuple[str, ...]) -> Any:
    if path == _OBJECTIVE_KEY:
        return shard_objective(manifest)
    for key in path:
        manifest = manifest[key]
    return manifest


def read_data_manifest(cfg: DataConfig) -> dict[str, Any]:
    """The shards' manifest (fetched from the remote when needed); several streams must agree on tokens and seq_len."""
    roots = shard_roots(cfg)
    manifests = [_root_manifest(root, cfg.download_timeout) for root in roots]
    first = manifests[0]
    for root, manifest in zip(roots[1:], manifests[1:], strict=True):
        for path in (*_MUST_AGREE, _OBJECTIVE_KEY):
            if _field(manifest, path) != _field(first, path):
                raise UserError(
                    f"{root.name} disagrees with {roots[0].name} on {'.'.join(path)} ({_field(manifest, path)} vs "
                    f"{_field(first, path)}); mix only shards built with the same tokenizer and seq_len"
                )
    return first


def _check_split_present(root: ShardRoot, split: str) -> None:
    """A local-only root must hold the split, and every shard file of it whole; of a remote root, what is cached.

    Missing pieces of a remote root are StreamingDataset's to fetch (and to report when the remote lacks them).
    """
    split_dir = os.path.join(root.local, split)
    if not os.path.isfile(os.path.join(split_dir, INDEX_NAME)):
        if root.remote is None:
            raise UserError(
                f"{root.name}.local '{root.local}' has no '{split}' split ({split}/{INDEX_NAME}); "
                "rebuild the shards or fix data.train_split/data.eval_split"
            )
        return
    check_split_shards(split_dir, local_only=root.remote is None)


def build_mlm_dataset(
    cfg: DataConfig, *, split: str, device_batch_size: int, seed: int, shuffle: bool, remask_each_epoch: bool
) -> MLMStreamingDataset:
    """The StreamingDataset of `split` over every shard root; `batch_size` makes its order rank-count independent."""
    roots = shard_roots(cfg)
    for root in roots:
        _check_split_present(root, split)
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
        return MLMStreamingDataset(
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


def build_masker(cfg: DataConfig, manifest: dict[str, Any], seed: int) -> MLMMasker:
    """The masker for these shards: special ids come from the manifest, never hard-coded."""
    special_tokens = manifest["tokenizer"]["special_tokens"]
    if "mask" not in special_tokens:
        raise UserError(
            "the shards' manifest.json names no 'mask' special token; "
            "rebuild the shards with data_prep/convert_dataset.py"
        )
    return MLMMasker(
        vocab_size=manifest["tokenizer"]["vocab_size"],
        special_token_ids=special_tokens.values(),
        mask_token_id=special_tokens["mask"],
        seed=seed,
        mlm_probability=cfg.mlm_probability,
        mask_token_prob=cfg.mask_token_prob,
        random_token_prob=cfg.random_token_prob,
    )


def build_mlm_dataloader(
    cfg: DataConfig,
    *,
    split: str,
    device_batch_size: int,
    seed: int,
    vocab_size: int | None,
    tokenizer_sha256: str | None = None,
    shuffle: bool | None = None,
    drop_last: bool = True,
    objective: str = "mlm",
) -> MLMDataLoader:
    """A DataLoader of masked batches {input_ids, labels, masked_positions} of `split`, or with
    `objective="causal"` of next-token batches {input_ids, labels} (data/causal.py), no masking.

    `vocab_size` is the model's (None: accept the shards'); shards of another vocab, tokenizer or objective are refused.
    `shuffle=None` shuffles the train split per `data.shuffle` and leaves other splits in order. Masks are
    redrawn each epoch for the train split and fixed for the others, so every eval pass sees the same batches.
    """
    if not split:
        raise UserError("no data split given; set data.train_split / data.eval_split")
    if device_batch_size <= 0:
        raise UserError(f"device batch size is {device_batch_size}; it must be positive")
    validate(cfg, "data.")  # the config schema's rules, for callers that build a DataConfig themselves
    manifest = read_data_manifest(cfg)
    where = ", ".join(root.local for root in shard_roots(cfg))
    check_compatible(
        manifest,
        manifest["tokenizer"]["vocab_size"] if vocab_size is None else vocab_size,
        tokenizer_sha256,
        where=where,
    )
    check_objective(manifest, objective, where)
    is_train = split == cfg.train_split
    dataset = build_mlm_dataset(
        cfg,
        split=split,
        device_batch_size=device_batch_size,
        seed=seed,
        shuffle=(cfg.shuffle and is_train) if shuffle is None else shuffle,
        remask_each_epoch=is_train,
    )
    if drop_last:
        _check_one_global_batch(dataset, split, device_batch_size)
    workers = cfg.num_workers
    shard_vocab = manifest["tokenizer"]["vocab_size"]
    if objective == "causal":
        collate: CausalCollator | MLMCollator = CausalCollator(dataset, shard_vocab)
    else:
        collate = MLMCollator(dataset, build_masker(cfg, manifest, seed), shard_vocab)
    return MLMDataLoader(
        dataset,
        batch_size=device_batch_size,
        collate_fn=collate,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory_batches=cfg.pin_memory and torch.cuda.is_available(),
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        persistent_workers=cfg.persistent_workers and workers > 0,
    )


def _check_one_global_batch(dataset: MLMStreamingDataset, split: str, device_batch_size: int) -> None:
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


def build_mlm_dataspec(cfg: DataConfig, **loader_args: Any) -> DataSpec:
    """`build_mlm_dataloader(cfg, **loader_args)` as a Composer DataSpec that counts samples and tokens."""
    dataloader = build_mlm_dataloader(cfg, **loader_args)
    return DataSpec(
        dataloader, get_num_samples_in_batch=num_samples_in_batch, get_num_tokens_in_batch=num_tokens_in_batch
    )
