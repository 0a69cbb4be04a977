"""The `data:` section of a pretraining recipe: where shards live and how they become masked batches."""

from __future__ import annotations

from dataclasses import dataclass, field

from composer_bert.errors import UserError
from composer_bert.schema import bounded, choice, key_error, positive, seed_field

SHUFFLE_ALGOS = ["py1e", "py1br", "py1b", "py1s", "py2s", "naive"]


@dataclass
class StreamConfig:
    """One shard root of a mixture (holding train/, val/ and manifest.json); `proportion`: its share (None: by size)."""

    local: str | None = None
    remote: str | None = None
    proportion: float | None = positive(None, "a positive share, or leave it unset")


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
    shuffle_seed: int | None = seed_field(None)  # None: the run's seed
    shuffle_algo: str = choice("py1e", SHUFFLE_ALGOS)
    shuffle_block_size: int | None = positive(None, "a positive number of samples")  # None: streaming's default
    num_canonical_nodes: int | None = positive(None, "a positive node count")  # None: the first run's node count (kept on resume); sets the sample order
    predownload: int | None = positive(None, "a positive number of samples")  # samples to fetch ahead per worker; None: 8 x device batch
    cache_limit: str | None = None  # e.g. "50gb": evict shards of a remote dataset beyond this
    download_timeout: float = positive(60.0, "a positive number of seconds")
    mlm_probability: float = bounded(0.15, "a probability in (0, 1], e.g. 0.15", gt=0, le=1)
    eval_mlm_probability: float | None = bounded(None, "a probability in (0, 1], e.g. 0.15", gt=0, le=1)  # None: as mlm_probability (MosaicBERT evaluates at 0.15)
    mask_token_prob: float = bounded(0.8, "a probability in [0, 1]", ge=0, le=1)  # of the masked positions: replaced by [MASK]
    random_token_prob: float = bounded(0.1, "a probability in [0, 1]", ge=0, le=1)  # of the masked positions: replaced by a random non-special token; rest kept
    num_workers: int = bounded(1, "0 (load in the training process) or more", ge=0)
    prefetch_factor: int | None = positive(2, "a positive number of batches per worker")
    persistent_workers: bool = True
    pin_memory: bool = True

    def check(self) -> None:
        if self.streams and (self.local or self.remote):
            raise UserError("set either data.local/data.remote or data.streams, not both")
        for name, stream in self.streams.items():
            if not stream.local and not stream.remote:
                raise UserError(
                    f"data.streams.{name} has neither local nor remote; set data.streams.{name}.local or .remote to a shard root"
                )
        with_proportion = [stream.proportion is not None for stream in self.streams.values()]
        if any(with_proportion) and not all(with_proportion):
            raise UserError("some data.streams have a proportion and some don't; give every stream one, or none (mix by size)")
        check_replacement_split(self.mask_token_prob, self.random_token_prob)


def check_replacement_split(mask_token_prob: float, random_token_prob: float) -> None:
    """[MASK] and random replacement share the masked positions, so their probabilities sum to at most 1."""
    if mask_token_prob + random_token_prob > 1.0 + 1e-9:
        raise key_error(
            "data.mask_token_prob",
            mask_token_prob,
            f"a share that sums with data.random_token_prob ({random_token_prob}) to at most 1 (e.g. 0.8 and 0.1)",
        )
