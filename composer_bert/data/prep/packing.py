"""Documents -> filtered, de-duplicated, split, packed rows of token ids in MDS shards (the converter).

Pipeline, in document order: worker processes (encoding.py) tokenize ordered chunks of documents
(fast tokenizer, no special tokens) and hash each normalized document; the main process then applies
the Cramming filters (tokens/characters ratio, minimum length, exact de-duplication), assigns each
kept document to train or val by its hash, and packs each split into rows (rows.py)::

    [CLS] doc tokens [SEP] doc tokens [SEP] ...      exactly seq_len tokens, no padding
    doc tokens [EOT] doc tokens [EOT] ...            the same, for a causal LM (--objective causal): no [CLS],
                                                     the end-of-text token ends each document

[CLS], [SEP] and [EOT] are the tokenizer's own tokens for those roles, whatever their ids (tokenizer_roles.py).

Several sources are mixed by shares of kept tokens (mixture.py). Since chunks come back in order and
all decisions are made in the main process, the shards are byte-identical for any number of workers.

Normalization for de-duplication and the split: lowercase, whitespace runs collapsed to one space.
The split is by a hash of that, not by position, so a document lands in the same split whatever
else is in the corpus, and duplicates never straddle train and val. The de-duplication set holds
one 16-byte digest per kept document (~100 bytes each in Python): cap huge sources with
--max-documents.

The ratio filter drops documents with more tokens per character than a cutoff: text the tokenizer handles badly
(tables, code, other scripts, debris). How many tokens normal text takes depends on the tokenizer: Cramming's
0.25 is its cutoff for a 32k WordPiece vocabulary (1.14 x the median, 0.219, that such a tokenizer gives
WikiText-2), while a 2k byte-level BPE gives the same text a median of 0.32, and 0.25 then drops 2,476 of its
2,480 documents. The default cutoff (`--max-token-ratio auto`) is therefore relative: RELATIVE_RATIO_CUTOFF (1.5)
times the corpus's own median ratio, each document weighted by its characters, measured on the first
CALIBRATION_CHARS characters of each source (pooled) before anything is packed. On WikiText-2 it drops the
' = Title = ' lines and, of 1,156 paragraphs, 2 (lists of <unk>) with a 32k WordPiece and none with a 2k
byte-level BPE. A number given with --max-token-ratio is the cutoff exactly: Cramming's recipe passes 0.25. The
manifest records what was asked for, the median and the cutoff applied.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import composer_bert
from composer_bert.data.contract import MANIFEST_NAME, write_manifest
from composer_bert.data.prep.encoding import DIGEST_BYTES as _DIGEST_BYTES
from composer_bert.data.prep.encoding import EncodedChunk, document_chunks, encoded_chunks, encoder_pool
from composer_bert.data.prep.mixture import MixPart, Mixture, SourceTally, interleave, source_entries
from composer_bert.data.prep.rows import RowWriter, load_tokenizer, row_mds_writer
from composer_bert.data.prep.sources import SKIP_REASONS, DocumentSource, checked_documents, limit_documents
from composer_bert.errors import UserError
from composer_bert.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from composer_bert.run.files import atomic_output_dir, write_errors

__all__ = ["ConvertOptions", "convert_dataset", "load_tokenizer", "row_mds_writer"]

MIN_SEQ_LEN = 8
DEFAULT_MIN_TOKENS = 8
AUTO_RATIO = "auto"  # --max-token-ratio's default: RELATIVE_RATIO_CUTOFF x the corpus's median tokens per character
DEFAULT_MAX_TOKEN_RATIO = AUTO_RATIO
CRAMMING_MAX_TOKEN_RATIO = 0.25  # Cramming's cutoff, for its 32k WordPiece vocabulary
RELATIVE_RATIO_CUTOFF = 1.5
CALIBRATION_CHARS = 1 << 20  # of each source's first documents, to measure the median ratio on
DEFAULT_VAL_FRACTION = 0.01
_SPLITS = ("train", "val")
_FILTERS = ("ratio_dropped", "duplicate_dropped", "too_short_dropped")


@dataclass
class ConvertOptions:
    """Everything about a conversion except where documents come from and go to."""

    seq_len: int = 128
    val_fraction: float = DEFAULT_VAL_FRACTION
    max_token_ratio: float | str | None = DEFAULT_MAX_TOKEN_RATIO  # a cutoff, AUTO_RATIO, or None: filter off
    min_tokens: int = DEFAULT_MIN_TOKENS
    dedup: bool = True
    workers: int = max(1, min(8, os.cpu_count() or 1))
    max_documents: int | None = None  # per source
    seed: int = 0  # seeds the synthetic source; recorded in the manifest
    progress: bool = True
    objective: str = DEFAULT_OBJECTIVE  # an entry of objectives.py (its rows); recorded in the manifest, checked by training
    shard_bytes: int = 1 << 26  # streaming's size_limit; smaller shards: finer-grained downloads from a remote

    def check(self) -> None:
        if self.seq_len < MIN_SEQ_LEN:
            raise UserError(f"--seq-len {self.seq_len} is too short; use at least {MIN_SEQ_LEN} (BERT uses 128 or 512)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"--val-fraction {self.val_fraction} must be in [0, 1), e.g. 0.01")
        ratio = self.max_token_ratio
        if ratio not in (None, AUTO_RATIO) and (isinstance(ratio, str) or not (math.isfinite(ratio) and ratio > 0)):
            raise UserError(
                f"--max-token-ratio {ratio} must be a positive number or '{AUTO_RATIO}', or pass --no-ratio-filter"
            )
        if self.min_tokens < 0:
            raise UserError(f"--min-tokens {self.min_tokens} must be 0 or more")
        if self.workers < 1:
            raise UserError(f"--workers {self.workers} must be at least 1")
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective {self.objective!r} is unknown; use one of: {', '.join(OBJECTIVES)}")
        if self.shard_bytes < 1024:
            raise UserError(f"--shard-bytes {self.shard_bytes} is too small; use at least 1024 (default 64 MiB)")
        if self.max_documents is not None and self.max_documents < 1:
            raise UserError(f"--max-documents {self.max_documents} must be at least 1")
        if self.seed < 0:  # Python's random.Random(-n) is Random(n): a negative seed would repeat a positive one
            raise UserError(f"--seed {self.seed} must be 0 or more (random.Random(-n) draws what Random(n) does)")


def _pack_chunk(
    chunk: EncodedChunk,
    writers: dict[str, RowWriter],
    options: ConvertOptions,
    cutoff: float | None,
    seen: set[bytes],
    tally: SourceTally,
) -> None:
    """Filter (ratio `cutoff`, None: no ratio filter), de-duplicate (against `seen`), split and pack one encoded
    chunk into `writers`; count in `tally`."""
    n = len(chunk.token_counts)
    tally.documents_read += n
    keep = np.ones(n, dtype=bool)
    if cutoff is not None:
        too_dense = chunk.token_counts > cutoff * chunk.char_counts
        tally.ratio_dropped += int(too_dense.sum())
        keep &= ~too_dense
    too_short = keep & (chunk.token_counts < options.min_tokens)
    tally.too_short_dropped += int(too_short.sum())
    keep &= ~too_short
    if options.dedup:
        digests = chunk.digests
        for i in np.flatnonzero(keep):
            digest = digests[i * _DIGEST_BYTES : (i + 1) * _DIGEST_BYTES]
            if digest in seen:
                keep[i] = False
                tally.duplicate_dropped += 1
            else:
                seen.add(digest)
    # Top 53 bits of the digest as a uniform number in [0, 1) decide the split, exactly and portably.
    val_threshold = int(options.val_fraction * (1 << 53))
    hash_bits = np.frombuffer(chunk.digests, dtype="<u8")[::2] >> np.uint64(11)
    is_val = hash_bits < np.uint64(val_threshold)
    for split, in_split in (("train", keep & ~is_val), ("val", keep & is_val)):
        selected = np.repeat(in_split, chunk.token_counts + 1)
        writers[split].add(chunk.tokens_with_sep[selected], int(in_split.sum()))
    tally.documents += int(keep.sum())
    tally.tokens += int((chunk.token_counts[keep] + 1).sum())


def _calibrated(streams: Sequence[Iterator[tuple[EncodedChunk, Any]]]) -> tuple[list[Iterator], float]:
    """The streams, each with its first CALIBRATION_CHARS characters of chunks read ahead and put back, and the
    median tokens per character of the documents read ahead (each weighted by its characters)."""
    heads = []
    for stream in streams:
        head, chars = [], 0
        while chars < CALIBRATION_CHARS and (item := next(stream, None)) is not None:
            head.append(item)
            chars += int(item[0].char_counts.sum())
        heads.append(head)
    chunks = [chunk for head in heads for chunk, _ in head]
    tokens = np.concatenate([chunk.token_counts for chunk in chunks])
    chars = np.concatenate([chunk.char_counts for chunk in chunks])
    ratios = tokens / chars
    order = np.argsort(ratios, kind="stable")
    weight = np.cumsum(chars[order])
    median = float(ratios[order][np.searchsorted(weight, weight[-1] / 2)])
    return [itertools.chain(head, stream) for head, stream in zip(heads, streams, strict=True)], median


def ratio_cutoff(max_token_ratio: float | str | None, median: float) -> float | None:
    """The cutoff applied: a number exactly as given, RELATIVE_RATIO_CUTOFF x `median` for AUTO_RATIO, None: off."""
    if max_token_ratio == AUTO_RATIO:
        return round(RELATIVE_RATIO_CUTOFF * median, 4)
    return max_token_ratio  # type: ignore[return-value]


def _tagged_chunks(source: DocumentSource, documents: Iterable[str]) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Chunks, each tagged with the source's read counts (invalid UTF-8, rows without text) once it was cut: a
    function of position only, whatever the workers have read ahead."""
    for chunk in document_chunks(documents):
        yield chunk, source.read_counts()


def convert_dataset(
    source: DocumentSource | Mixture,
    tokenizer_dir: str | Path,
    out: str | Path,
    options: ConvertOptions,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `out/train`, `out/val` and `out/manifest.json` from `source` (or a mixture); return the manifest."""
    options.check()
    mixture = source if isinstance(source, Mixture) else Mixture([MixPart(source, 1.0)])
    info = load_tokenizer(tokenizer_dir, options.objective)
    documents = [
        checked_documents(part.source, limit_documents(part.source, options.max_documents)) for part in mixture.parts
    ]
    tallies = [SourceTally() for _ in mixture.parts]
    with (
        atomic_output_dir(out, overwrite, MANIFEST_NAME) as tmp,
        encoder_pool(info.tokenizer, info.separator_id, info.dtype, options.workers) as pool,
    ):
        what = f"shards to '{os.path.abspath(out)}'"
        writers = {
            split: RowWriter(tmp / split, options.seq_len, info.row_start_id, info.dtype, what, options.shard_bytes)
            for split in _SPLITS
        }
        streams = [
            encoded_chunks(pool, _tagged_chunks(part.source, docs), options.workers)
            for part, docs in zip(mixture.parts, documents, strict=True)
        ]
        seen: set[bytes] = set()
        with _progress_bars(options.progress) as on_chunk:
            calibrated, median = _calibrated(streams)
            cutoff = ratio_cutoff(options.max_token_ratio, median)
            proportions = [part.proportion for part in mixture.parts]
            for index, (chunk, read_counts) in interleave(calibrated, proportions, tallies):
                tallies[index].take_counts(read_counts)
                _pack_chunk(chunk, writers, options, cutoff, seen, tallies[index])
                on_chunk(len(chunk.token_counts), len(chunk.tokens_with_sep))
        for stream in streams:
            stream.close()  # a stopped mixture stops reading its other sources now, not at garbage collection
        for part, tally in zip(mixture.parts, tallies, strict=True):
            if tally.exhausted:  # read to its end: rows without text after its last chunk count too
                tally.take_counts(part.source.read_counts())
        tails = {split: len(writer.carry) for split, writer in writers.items()}
        splits = {split: writer.finish() for split, writer in writers.items()}
        _check_result(mixture, tallies, splits, options, cutoff)
        manifest = {
            "source": mixture.spec,
            "sources": source_entries(mixture, tallies),
            "tokenizer": {
                "path": str(info.path),
                "sha256": info.sha256,
                "vocab_size": info.vocab_size,
                "special_tokens": info.special_ids,
            },
            "seq_len": options.seq_len,
            "objective": options.objective,
            "dtype": info.dtype.name,
            "splits": splits,
            "documents_read": sum(tally.documents_read for tally in tallies),
            "filters": {
                **{name: sum(getattr(tally, name) for tally in tallies) for name in _FILTERS},
                "max_token_ratio": options.max_token_ratio,
                "median_token_ratio": round(median, 4),
                "ratio_cutoff": cutoff,
                "min_tokens": options.min_tokens,
                "dedup": options.dedup,
            },
            "skipped_rows": {reason: sum(tally.skipped_rows[reason] for tally in tallies) for reason in SKIP_REASONS},
            "invalid_utf8_replaced": sum(tally.invalid_utf8_replaced for tally in tallies),
            "dropped_tail_tokens": sum(tails.values()),
            "val_fraction": options.val_fraction,
            "max_documents": options.max_documents,
            "seed": options.seed,
            "package_version": composer_bert.__version__,
        }
        with write_errors(what):
            write_manifest(tmp, manifest)
    return manifest


def _check_result(
    mixture: Mixture,
    tallies: list[SourceTally],
    splits: dict[str, dict[str, int]],
    options: ConvertOptions,
    cutoff: float | None,
) -> None:
    hint = f"relax --max-token-ratio (cutoff {cutoff}) or --min-tokens, or check the tokenizer"
    for part, tally in zip(mixture.parts, tallies, strict=True):
        if tally.documents == 0:
            what = "no documents" if len(tallies) == 1 else f"no documents of source '{part.source.spec}'"
            raise UserError(
                f"{what} survived the filters ({tally.ratio_dropped} too many tokens per character, "
                f"{tally.too_short_dropped} shorter than {options.min_tokens} tokens, {tally.duplicate_dropped} "
                f"duplicates); {hint}"
            )
    if splits["train"]["rows"] == 0:
        raise UserError(
            f"the train split has fewer tokens than one row of --seq-len {options.seq_len}; add documents or "
            "lower --seq-len"
        )


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """Two bars, documents/s and tokens/s ([SEP] included); yields the per-chunk update callback."""
    docs_bar = tqdm(desc="documents", unit="doc", unit_scale=True, disable=not enabled, position=0)
    tokens_bar = tqdm(desc="tokens", unit="tok", unit_scale=True, disable=not enabled, position=1)

    def on_chunk(documents: int, tokens: int) -> None:
        docs_bar.update(documents)
        tokens_bar.update(tokens)

    try:
        yield on_chunk
    finally:
        docs_bar.close()
        tokens_bar.close()
