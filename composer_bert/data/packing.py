"""Documents -> filtered, de-duplicated, split, packed rows of token ids in MDS shards (the converter).

Pipeline, in document order: worker processes (encoding.py) tokenize ordered chunks of documents
(fast tokenizer, no special tokens) and hash each normalized document; the main process then applies
the Cramming filters (tokens/characters ratio, minimum length, exact de-duplication), assigns each
kept document to train or val by its hash, and packs each split into rows::

    [CLS] doc tokens [SEP] doc tokens [SEP] ...      exactly seq_len tokens, no padding

A document may continue from one row into the next; the trailing partial row is dropped and
counted. Since chunks come back in order and all decisions are made in the main process, the
shards are byte-identical for any number of workers.

Normalization for de-duplication and the split: lowercase, whitespace runs collapsed to one space.
The split is by a hash of that, not by position, so a document lands in the same split whatever
else is in the corpus, and duplicates never straddle train and val. The de-duplication set holds
one 16-byte digest per kept document (~100 bytes each in Python): cap huge sources with
--max-documents.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.pool
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

import composer_bert
from composer_bert.data.encoding import DIGEST_BYTES as _DIGEST_BYTES
from composer_bert.data.encoding import EncodedChunk, encode_chunk, encoder_pool
from composer_bert.data.manifest import MANIFEST_NAME, SPECIAL_TOKENS, tokenizer_fingerprint, write_manifest
from composer_bert.data.sources import DocumentSource, limit_documents
from composer_bert.errors import UserError
from composer_bert.files import atomic_output_dir, write_errors

MIN_SEQ_LEN = 8
DEFAULT_MIN_TOKENS = 8
DEFAULT_MAX_TOKEN_RATIO = 0.25
DEFAULT_VAL_FRACTION = 0.01
_CHUNK_CHARS = 1 << 16  # characters per worker task: amortizes pickling, yet many tasks keep all workers busy
_SPLITS = ("train", "val")


@dataclass
class ConvertOptions:
    """Everything about a conversion except where documents come from and go to."""

    seq_len: int = 128
    val_fraction: float = DEFAULT_VAL_FRACTION
    max_token_ratio: float | None = DEFAULT_MAX_TOKEN_RATIO  # None turns the ratio filter off
    min_tokens: int = DEFAULT_MIN_TOKENS
    dedup: bool = True
    workers: int = max(1, min(8, os.cpu_count() or 1))
    max_documents: int | None = None
    seed: int = 0  # seeds the synthetic source; recorded in the manifest
    progress: bool = True

    def check(self) -> None:
        if self.seq_len < MIN_SEQ_LEN:
            raise UserError(f"--seq-len {self.seq_len} is too short; use at least {MIN_SEQ_LEN} (BERT uses 128 or 512)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise UserError(f"--val-fraction {self.val_fraction} must be in [0, 1), e.g. 0.01")
        if self.max_token_ratio is not None and self.max_token_ratio <= 0:
            raise UserError(f"--max-token-ratio {self.max_token_ratio} must be positive, or pass --no-ratio-filter")
        if self.min_tokens < 0:
            raise UserError(f"--min-tokens {self.min_tokens} must be 0 or more")
        if self.workers < 1:
            raise UserError(f"--workers {self.workers} must be at least 1")
        if self.max_documents is not None and self.max_documents < 1:
            raise UserError(f"--max-documents {self.max_documents} must be at least 1")


@dataclass
class TokenizerInfo:
    """What shards must record about the tokenizer that made them."""

    path: Path
    tokenizer: Tokenizer
    sha256: str
    vocab_size: int
    special_ids: dict[str, int]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.vocab_size <= 65536 else np.dtype(np.int32)


def load_tokenizer(tokenizer_dir: str | Path) -> TokenizerInfo:
    """Load `DIR/tokenizer.json` and check it has every special token the rows need."""
    path = Path(tokenizer_dir)
    if not path.is_dir():
        raise UserError(f"tokenizer directory '{path}' does not exist; train one with data_prep/train_tokenizer.py")
    sha256 = tokenizer_fingerprint(path)
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as err:  # tokenizers raises a bare Exception for malformed files
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"tokenizer in '{path}' cannot be loaded ({first_line}); retrain it with data_prep/train_tokenizer.py"
        ) from None
    special_ids: dict[str, int] = {}
    for role, token in SPECIAL_TOKENS.items():
        token_id = tokenizer.token_to_id(token)
        if token_id is None:
            raise UserError(f"tokenizer in '{path}' has no {token} token; retrain it with data_prep/train_tokenizer.py")
        special_ids[role] = token_id
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    return TokenizerInfo(path.resolve(), tokenizer, sha256, vocab_size, special_ids)


def _chunks(documents: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    chars = 0
    for doc in documents:
        chunk.append(doc)
        chars += len(doc)
        if chars >= _CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def _encoded_chunks(pool: multiprocessing.pool.Pool, documents: Iterable[str], workers: int) -> Iterator[EncodedChunk]:
    """Encode chunks in `pool`, yielded in input order with at most 2 per worker in flight (bounded memory)."""
    pending: deque[multiprocessing.pool.AsyncResult] = deque()
    for chunk in _chunks(documents):
        pending.append(pool.apply_async(encode_chunk, (chunk,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def row_mds_writer(out: Path, dtype: np.dtype) -> Any:
    """An MDSWriter for the `input_ids` column whose rows all share one shape and dtype.

    The stock per-sample encoder re-derives the shape header of every row (tens of microseconds, a
    large share of the main process's time); here the header the stock encoder wrote for the first
    row is reused, followed by the row's raw bytes, which is byte-for-byte what the stock encoder
    writes for a row of the same shape and dtype.
    """
    from streaming import MDSWriter  # imports torch: only pay for it when writing

    class RowMDSWriter(MDSWriter):
        header: bytes | None = None

        def encode_sample(self, sample: dict[str, Any]) -> bytes:
            row = sample["input_ids"]
            if self.header is None:
                encoded = super().encode_sample(sample)
                self.header = encoded[: len(encoded) - row.nbytes]
                return encoded
            return self.header + row.tobytes()

    return RowMDSWriter(out=str(out), columns={"input_ids": f"ndarray:{dtype.name}"}, compression=None)


class _RowWriter:
    """Packs one split's token stream into [CLS]-led rows of seq_len and writes them to MDS."""

    def __init__(self, out: Path, seq_len: int, cls_id: int, dtype: np.dtype, what: str) -> None:
        self.what = what  # names the output in a write error (a full disk): the final --out, not the staging dir
        with write_errors(what):
            self.writer = row_mds_writer(out, dtype)
        self.body = seq_len - 1  # tokens after [CLS]
        self.seq_len = seq_len
        self.cls_id = cls_id
        self.dtype = dtype
        self.carry = np.empty(0, dtype=dtype)
        self.rows = 0
        self.documents = 0

    def add(self, stream: np.ndarray, documents: int) -> None:
        self.documents += documents
        buffer = np.concatenate([self.carry, stream]) if len(self.carry) else stream
        num_rows = len(buffer) // self.body
        rows = np.empty((num_rows, self.seq_len), dtype=self.dtype)
        rows[:, 0] = self.cls_id
        rows[:, 1:] = buffer[: num_rows * self.body].reshape(num_rows, self.body)
        self.carry = buffer[num_rows * self.body :].copy()
        with write_errors(self.what):
            for row in rows:
                self.writer.write({"input_ids": row})
        self.rows += num_rows

    def finish(self) -> dict[str, int]:
        with write_errors(self.what):
            self.writer.finish()
        return {"rows": self.rows, "tokens": self.rows * self.seq_len, "documents": self.documents}


@dataclass
class _FilterCounts:
    read: int = 0
    ratio_dropped: int = 0
    too_short_dropped: int = 0
    duplicate_dropped: int = 0


def _pack(
    chunks: Iterable[EncodedChunk],
    writers: dict[str, _RowWriter],
    options: ConvertOptions,
    counts: _FilterCounts,
    on_chunk: Callable[[int, int], None],
) -> None:
    """Filter, de-duplicate, split and pack encoded chunks, in order, into `writers`."""
    seen: set[bytes] = set()
    val_threshold = int(options.val_fraction * (1 << 53))
    for chunk in chunks:
        n = len(chunk.token_counts)
        counts.read += n
        keep = np.ones(n, dtype=bool)
        if options.max_token_ratio is not None:
            too_dense = chunk.token_counts > options.max_token_ratio * chunk.char_counts
            counts.ratio_dropped += int(too_dense.sum())
            keep &= ~too_dense
        too_short = keep & (chunk.token_counts < options.min_tokens)
        counts.too_short_dropped += int(too_short.sum())
        keep &= ~too_short
        if options.dedup:
            digests = chunk.digests
            for i in np.flatnonzero(keep):
                digest = digests[i * _DIGEST_BYTES : (i + 1) * _DIGEST_BYTES]
                if digest in seen:
                    keep[i] = False
                    counts.duplicate_dropped += 1
                else:
                    seen.add(digest)
        # Top 53 bits of the digest as a uniform number in [0, 1) decide the split, exactly and portably.
        hash_bits = np.frombuffer(chunk.digests, dtype="<u8")[::2] >> np.uint64(11)
        is_val = hash_bits < np.uint64(val_threshold)
        for split, in_split in (("train", keep & ~is_val), ("val", keep & is_val)):
            selected = np.repeat(in_split, chunk.token_counts + 1)
            writers[split].add(chunk.tokens_with_sep[selected], int(in_split.sum()))
        on_chunk(n, len(chunk.tokens_with_sep))


def convert_dataset(
    source: DocumentSource, tokenizer_dir: str | Path, out: str | Path, options: ConvertOptions, overwrite: bool = False
) -> dict[str, Any]:
    """Write `out/train`, `out/val` and `out/manifest.json` from `source`; return the manifest."""
    options.check()
    info = load_tokenizer(tokenizer_dir)
    documents = iter(limit_documents(source, options.max_documents))
    first = next(documents, None)  # an empty source fails here, before any output exists
    if first is None:
        raise UserError(f"source '{source.spec}' has no documents; check the files or the --text-field")
    documents = itertools.chain([first], documents)
    counts = _FilterCounts()
    with (
        atomic_output_dir(out, overwrite, MANIFEST_NAME) as tmp,
        encoder_pool(info.tokenizer, info.special_ids["sep"], info.dtype, options.workers) as pool,
    ):
        what = f"shards to '{os.path.abspath(out)}'"
        writers = {
            split: _RowWriter(tmp / split, options.seq_len, info.special_ids["cls"], info.dtype, what)
            for split in _SPLITS
        }
        with _progress_bars(options.progress) as on_chunk:
            _pack(_encoded_chunks(pool, documents, options.workers), writers, options, counts, on_chunk)
        tails = {split: len(writer.carry) for split, writer in writers.items()}
        splits = {split: writer.finish() for split, writer in writers.items()}
        _check_result(counts, splits, options)
        manifest = {
            "source": source.spec,
            "tokenizer": {
                "path": str(info.path),
                "sha256": info.sha256,
                "vocab_size": info.vocab_size,
                "special_tokens": info.special_ids,
            },
            "seq_len": options.seq_len,
            "dtype": info.dtype.name,
            "splits": splits,
            "documents_read": counts.read,
            "filters": {
                "ratio_dropped": counts.ratio_dropped,
                "duplicate_dropped": counts.duplicate_dropped,
                "too_short_dropped": counts.too_short_dropped,
                "max_token_ratio": options.max_token_ratio,
                "min_tokens": options.min_tokens,
                "dedup": options.dedup,
            },
            "invalid_utf8_replaced": source.invalid_utf8_replaced,
            "dropped_tail_tokens": sum(tails.values()),
            "val_fraction": options.val_fraction,
            "seed": options.seed,
            "package_version": composer_bert.__version__,
        }
        with write_errors(what):
            write_manifest(tmp, manifest)
    return manifest


def _check_result(counts: _FilterCounts, splits: dict[str, dict[str, int]], options: ConvertOptions) -> None:
    kept = splits["train"]["documents"] + splits["val"]["documents"]
    if kept == 0:
        raise UserError(
            f"no documents survived the filters ({counts.ratio_dropped} too many tokens per character, "
            f"{counts.too_short_dropped} shorter than {options.min_tokens} tokens, {counts.duplicate_dropped} "
            "duplicates); relax --max-token-ratio (0.25 suits ~32k vocabularies) or --min-tokens, or check the "
            "tokenizer"
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
