"""Cheap checks that a split's shard files are whole, so a damaged one fails in one line before training reads it.

StreamingDataset trusts `index.json` and the shard files: a truncated or overwritten shard surfaces as an
IndexError or a dtype error deep inside a DataLoader worker, or as silently wrong rows. Here every local
shard is checked against its index entry without reading its data: the file size, and for MDS shards the
header (sample count, first and last record offsets). That catches truncation and a damaged header; a
corrupted byte inside the data is caught by the xxh64 hash each shard's index entry carries, which streaming
checks when it downloads a shard from a remote. Local shards are not hashed on every run (it reads every byte);
`verify_split` does that on demand (data_prep/verify_shards.py, after copying shards to a new disk).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash

from composer_bert.data.contract import SHARD_HASH
from composer_bert.errors import UserError

INDEX_NAME = "index.json"  # StreamingDataset's per-split index
INDEX_VERSION = 2
REBUILD = "rebuild the shards with data_prep/convert_dataset.py"
_READ_BYTES = 1 << 22


@dataclass(frozen=True)
class ShardFile:
    """What a split's index says about one shard: its file (or compressed file), size and sample count."""

    basename: str
    size: int
    samples: int
    is_mds: bool
    zip_basename: str | None = None
    zip_size: int | None = None
    raw_hash: str | None = None  # SHARD_HASH hex digests from the index; None for shards built without hashes
    zip_hash: str | None = None


def _file_info(entry: Any) -> tuple[str, int, str | None] | None:
    if not isinstance(entry, dict):
        return None
    basename, size = entry.get("basename"), entry.get("bytes")
    if not isinstance(basename, str) or not basename or not isinstance(size, int) or size < 0:
        return None
    hashes = entry.get("hashes")
    digest = hashes.get(SHARD_HASH) if isinstance(hashes, dict) else None
    return basename, size, digest if isinstance(digest, str) else None


def read_split_index(split_dir: str) -> list[ShardFile]:
    """The shards `split_dir/index.json` lists; a missing field or unreadable index is a UserError naming it."""
    path = os.path.join(split_dir, INDEX_NAME)
    try:
        with open(path, "rb") as file:
            index = json.loads(file.read())
    except OSError as err:
        raise UserError(f"cannot read '{path}' ({err.strerror}); check the file, or {REBUILD}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"'{path}' is not valid JSON; {REBUILD}") from None
    if not isinstance(index, dict) or not isinstance(index.get("shards"), list):
        raise UserError(f"'{path}' is not a streaming index (no list of shards); {REBUILD}")
    if index.get("version") != INDEX_VERSION:
        raise UserError(f"'{path}' has version {index.get('version')!r}, expected {INDEX_VERSION}; {REBUILD}")
    shards = []
    for number, entry in enumerate(index["shards"]):
        raw = _file_info(entry.get("raw_data")) if isinstance(entry, dict) else None
        samples = entry.get("samples") if isinstance(entry, dict) else None
        zipped = _file_info(entry.get("zip_data")) if isinstance(entry, dict) and entry.get("zip_data") else None
        if raw is None or not isinstance(samples, int) or samples < 0:
            raise UserError(f"'{path}' has a malformed entry for shard {number}; {REBUILD}")
        zip_name, zip_size, zip_hash = zipped or (None, None, None)
        shards.append(
            ShardFile(raw[0], raw[1], samples, entry.get("format") == "mds", zip_name, zip_size, raw[2], zip_hash)
        )
    return shards


def shard_file(reader: Any) -> ShardFile:
    """The ShardFile of one of StreamingDataset's shard readers."""
    from streaming.base.format.mds.reader import MDSReader  # imports torch: only when a dataset exists anyway

    zipped = reader.zip_data
    return ShardFile(
        reader.raw_data.basename,
        reader.raw_data.bytes,
        reader.samples,
        isinstance(reader, MDSReader),
        zipped.basename if zipped else None,
        zipped.bytes if zipped else None,
    )


def check_shard_file(split_dir: str, shard: ShardFile) -> bool:
    """Check the shard's file in `split_dir` (raw, else compressed) against its index entry; False if neither exists.

    Raises a UserError naming the file when its size differs from the index's or its MDS header does not
    describe `shard.samples` records ending at the end of the file.
    """
    path = os.path.join(split_dir, shard.basename)
    if not os.path.isfile(path):
        if shard.zip_basename is None or not os.path.isfile(os.path.join(split_dir, shard.zip_basename)):
            return False
        path, expected_size = os.path.join(split_dir, shard.zip_basename), shard.zip_size
        _check_size(path, expected_size)
        return True
    _check_size(path, shard.size)
    if shard.is_mds:
        _check_mds_header(path, shard)
    return True


def _check_size(path: str, expected: int | None) -> None:
    size = os.path.getsize(path)
    if size != expected:
        what = "truncated" if expected is not None and size < expected else "not the file it lists"
        raise UserError(f"shard '{path}' has {size} bytes but its {INDEX_NAME} says {expected} ({what}); {REBUILD}")


def _check_mds_header(path: str, shard: ShardFile) -> None:
    """MDS layout: [num_samples u32][offsets u32 x (num_samples + 1)][config][records]; offsets end at the file end."""
    header_end = 4 * (shard.samples + 2)
    try:
        with open(path, "rb") as file:
            num_samples, first_offset = struct.unpack("<II", file.read(8))
            file.seek(4 + 4 * shard.samples)
            (last_offset,) = struct.unpack("<I", file.read(4))
    except (OSError, struct.error) as err:
        reason = err.strerror if isinstance(err, OSError) else "too short for its header"
        raise UserError(f"cannot read shard '{path}' ({reason}); {REBUILD}") from None
    if num_samples != shard.samples:
        problem = f"its header says {num_samples} samples, its {INDEX_NAME} {shard.samples}"
    elif not header_end <= first_offset <= last_offset or last_offset != shard.size:
        problem = "its header's record offsets do not fit the file"
    else:
        return
    raise UserError(f"shard '{path}' is damaged ({problem}); {REBUILD}")


def check_split_shards(split_dir: str, local_only: bool) -> None:
    """Check every shard of a split that is on disk; with `local_only` (no remote to fetch from), all must be."""
    for shard in read_split_index(split_dir):
        if not check_shard_file(split_dir, shard) and local_only:
            raise UserError(f"shard '{os.path.join(split_dir, shard.basename)}' is missing; {REBUILD}")


def verify_split(split_dir: str, on_bytes: Callable[[int], object] = lambda n: None) -> tuple[int, int, list[str]]:
    """Hash every shard file of a split against its index entry, reading every byte.

    Returns (shards, bytes read, problems): one line per shard that is missing, has the wrong size or header,
    does not match its hash, or has no hash to match (built before shards carried them). `on_bytes(n)` is
    called as bytes are read (a progress bar).
    """
    shards, read, problems = read_split_index(split_dir), 0, []
    for shard in shards:
        try:
            present = check_shard_file(split_dir, shard)
        except UserError as err:
            problems.append(str(err).split("; ")[0])
            continue
        if not present:
            problems.append(f"shard '{os.path.join(split_dir, shard.basename)}' is missing")
            continue
        raw = os.path.join(split_dir, shard.basename)
        path, expected = (raw, shard.raw_hash) if os.path.isfile(raw) else (
            os.path.join(split_dir, str(shard.zip_basename)), shard.zip_hash
        )  # fmt: skip
        if expected is None:
            problems.append(f"shard '{path}' has no {SHARD_HASH} hash in its {INDEX_NAME} (built before shards had them)")
            continue
        digest = xxhash.xxh64()
        try:
            with open(path, "rb") as file:
                while chunk := file.read(_READ_BYTES):
                    digest.update(chunk)
                    read += len(chunk)
                    on_bytes(len(chunk))
        except OSError as err:
            problems.append(f"shard '{path}' cannot be read ({err.strerror})")
            continue
        if digest.hexdigest() != expected:
            problems.append(f"shard '{path}' does not match the {SHARD_HASH} hash in its {INDEX_NAME}")
    return len(shards), read, problems
