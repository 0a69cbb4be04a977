"""Helpers the converter tests share: reading a shard set back, and fingerprinting it byte for byte."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


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
