"""Helpers the data tests share: a tokenizer trained here, a plain-Python reference of the converter's
document filters, reading a shard set back, fingerprinting it byte for byte, and one split's loader built
as a run builds it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from composer.core import DataSpec

from composer_bert.data.load.config import DataConfig
from composer_bert.data.load.loader import build_dataloader, num_samples_in_batch, num_tokens_in_batch
from composer_bert.data.load.shard_set import open_shards
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.data.prep.tokenizer_training import train_tokenizer
from composer_bert.objectives import DEFAULT_OBJECTIVE
from composer_bert.schema import validate


def save_synthetic_tokenizer(out: Path, documents: int, vocab_size: int) -> Path:
    """A WordPiece tokenizer trained on `documents` synthetic documents, saved as out/tokenizer.json."""
    train_tokenizer(synthetic_documents(documents, seed=0), vocab_size, progress=False).save(str(out / "tokenizer.json"))
    return out


def kept_documents(
    documents: Iterable[str],
    tokenizer_dir: Path,
    seen: set[str],
    dropped: dict[str, int],
    max_ratio: float | None = 0.25,
    min_tokens: int = 8,
) -> Iterator[tuple[str, list[int]]]:
    """The converter's filters in plain Python, in its order (tokens per character, length, duplicates against
    `seen`): yields (normalised text, token ids) of each kept document; counts the dropped ones in `dropped`."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    for doc in documents:
        ids = tokenizer.encode(doc, add_special_tokens=False).ids
        key = " ".join(doc.lower().split())
        if max_ratio is not None and len(ids) / len(doc) > max_ratio:
            dropped["ratio_dropped"] += 1
        elif len(ids) < min_tokens:
            dropped["too_short_dropped"] += 1
        elif key in seen:
            dropped["duplicate_dropped"] += 1
        else:
            seen.add(key)
            yield key, ids


def reference_cutoff(documents: Iterable[str], tokenizer_dir: Path, factor: float = 1.5) -> float:
    """The default ratio cutoff in plain Python: `factor` x the median tokens per character of `documents` (all of
    them: a corpus under the converter's calibration size), each document weighted by its characters."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    pairs = sorted((len(tokenizer.encode(doc, add_special_tokens=False).ids) / len(doc), len(doc)) for doc in documents)
    half, running = sum(chars for _, chars in pairs) / 2, 0
    for ratio, chars in pairs:
        running += chars
        if running >= half:
            return round(factor * ratio, 4)
    raise ValueError("no documents")


SKIPPED = {"null_text": 3, "not_text": 3, "empty_text": 2}  # the rows without text that `rows_with_gaps` plants


def rows_with_gaps(documents: list[str], typed: bool) -> list:
    """`documents` with rows that hold no text (SKIPPED) planted among them, and one after the last (a source's
    tail, which no chunk follows). `typed`: a table column holds one type, so only nulls and blanks go among its
    strings, and its 3 rows that are not text are the caller's to add (e.g. a file whose column holds numbers)."""
    gaps = [None, "", None, "  \n\t"] + ([] if typed else [7, ["a", "list"], True])
    rows = list(documents)
    for i, gap in enumerate(gaps):
        rows.insert(5 + 7 * i, gap)
    return rows + [None]


def read_rows(split_dir: Path) -> np.ndarray:
    """All rows of an MDS split, read with streaming's own reader."""
    from streaming.base.format import reader_from_json

    index = json.loads((split_dir / "index.json").read_text())
    rows = []
    for shard_info in index["shards"]:
        reader = reader_from_json(str(split_dir), None, shard_info)
        rows += [reader.get_item(i)["input_ids"] for i in range(reader.samples)]
    return np.stack(rows) if rows else np.empty((0, 0), dtype=np.uint16)


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path: equal dicts mean byte-identical trees."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def split_loader(
    cfg: DataConfig,
    *,
    vocab_size: int | None,
    objective: str = DEFAULT_OBJECTIVE,
    tokenizer_sha256: str | None = None,
    **loader_args,
):
    """What a run does for one split, in one call: validate the `data:` config (as loading the recipe does),
    open the shards, check the model against their contract (`vocab_size` None: the shards'), build the loader."""
    validate(cfg, "data.")
    shards = open_shards(cfg)
    shards.contract.check_model(vocab_size or shards.contract.vocab_size, objective, tokenizer_sha256)
    return build_dataloader(cfg, shards, **loader_args)


def split_dataspec(cfg: DataConfig, **args):
    """`split_loader`'s loader as the Composer DataSpec the trainer gets."""
    loader = split_loader(cfg, **args)
    return DataSpec(loader, get_num_samples_in_batch=num_samples_in_batch, get_num_tokens_in_batch=num_tokens_in_batch)
