"""The `data:` section of a pretraining recipe: where shards live and how they become masked batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class StreamConfig:
    """One StreamingDataset stream; `proportion` mixes several (None = by size)."""

    local: Optional[str] = None
    remote: Optional[str] = None
    proportion: Optional[float] = None


@dataclass
class DataConfig:
    """Shard root (`local` and/or `remote`, holding train/, val/ and manifest.json) or several `streams`."""

    local: Optional[str] = None
    remote: Optional[str] = None
    streams: dict[str, StreamConfig] = field(default_factory=dict)
    train_split: str = "train"
    eval_split: Optional[str] = "val"
    shuffle: bool = True
    shuffle_seed: Optional[int] = None
    shuffle_algo: str = "py1e"
    num_canonical_nodes: Optional[int] = None
    mlm_probability: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    num_workers: int = 1
    prefetch_factor: Optional[int] = 2
    persistent_workers: bool = True
    pin_memory: bool = True
