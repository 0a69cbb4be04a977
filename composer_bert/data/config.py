"""The `data:` section of a pretraining recipe: where shards live and how they become masked batches."""

from __future__ import annotations

from dataclasses import dataclass, field

from composer_bert.fields import choice

SHUFFLE_ALGOS = ["py1e", "py1br", "py1b", "py1s", "py2s", "naive"]


@dataclass
class StreamConfig:
    """One shard root of a mixture (holding train/, val/ and manifest.json); `proportion`: its share (None: by size)."""

    local: str | None = None
    remote: str | None = None
    proportion: float | None = None


@dataclass
class DataConfig:
    """Shard root (`local` and/or `remote`, holding train/, val/ and manifest.json) or several `streams`.

    `remote` (s3://, gs://, a path, ...) is streamed into `local`; with remote only, into a temp dir named
    after the remote. Order and masks are a function of the seed, so resumption and rank count don't change them.
    """

    local: str | None = None
    remote: str | None = None
    streams: dict[str, StreamConfig] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: str | None = "val"
    shuffle: bool = True
    shuffle_seed: int | None = None  # None: the run's seed
    shuffle_algo: str = choice("py1e", SHUFFLE_ALGOS)
    shuffle_block_size: int | None = None  # None: streaming's default
    num_canonical_nodes: int | None = None  # None: the first run's node count (kept on resume); sets the sample order
    predownload: int | None = None  # samples to fetch ahead per worker; None: 8 x device batch
    cache_limit: str | None = None  # e.g. "50gb": evict shards of a remote dataset beyond this
    download_timeout: float = 60.0
    mlm_probability: float = 0.15
    eval_mlm_probability: float | None = None  # None: as mlm_probability (MosaicBERT evaluates at 0.15)
    mask_token_prob: float = 0.8  # of the masked positions: replaced by [MASK]
    random_token_prob: float = 0.1  # of the masked positions: replaced by a random non-special token; rest kept
    num_workers: int = 1
    prefetch_factor: int | None = 2
    persistent_workers: bool = True
    pin_memory: bool = True
