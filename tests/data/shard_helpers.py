"""Helpers the converter tests share: a tokenizer trained here, a plain-Python reference of the converter's
document filters, reading a shard set back, and fingerprinting it byte for byte."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from composer_bert.data.synthetic import synthetic_documents
from composer_bert.data.tokenizer_training import train_tokenizer


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
