"""The converter's tokenizing worker processes: each holds the tokenizer and encodes chunks of documents.

`encode_chunk` runs in the workers of `encoder_pool`; the pool shuts down cleanly whatever the main
process imported (see `_init_worker`). `encoded_chunks` feeds a pool ordered chunks of one source and
yields the results in the same order, so what the main process decides never depends on the worker count.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from tokenizers import Tokenizer

DIGEST_BYTES = 16
_CHUNK_CHARS = 1 << 16  # characters per worker task: amortizes pickling, yet many tasks keep all workers busy
T = TypeVar("T")


def normalized_digest(document: str) -> bytes:
    """16-byte blake2b of the document lowercased with whitespace runs collapsed (dedup and split key)."""
    return hashlib.blake2b(" ".join(document.lower().split()).encode("utf-8"), digest_size=DIGEST_BYTES).digest()


@dataclass
class EncodedChunk:
    """One chunk of documents after tokenization, in document order (what a worker sends back)."""

    tokens_with_sep: np.ndarray  # each document's ids followed by [SEP], concatenated
    token_counts: np.ndarray  # tokens per document, [SEP] not counted
    char_counts: np.ndarray
    digests: bytes  # DIGEST_BYTES per document


_worker_tokenizer: Tokenizer | None = None
_worker_sep_id = 0
_worker_dtype = np.dtype(np.uint16)
_POOL_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# Seconds Pool.terminate gets before its workers are killed instead (`_terminate`): it returns in well under a
# second when it works, and an interrupted conversion should stop within a couple of seconds.
TERMINATE_PATIENCE_S = 5.0


def _init_worker(tokenizer_json: str, sep_id: int, dtype: str) -> None:
    """Set up a worker: its signal handling first, then the tokenizer.

    A forked worker inherits the parent's Python signal handlers; Composer's (installed when `composer` is
    imported) turn SIGTERM into SystemExit, so `Pool.terminate` could leave a worker unwinding while it holds
    the task queue's lock, and the pool's shutdown then waits forever. Here SIGTERM kills outright, as the pool
    expects, and Ctrl-C is the main process's to handle (no worker tracebacks). The parent forks with both
    signals blocked (`encoder_pool`), so one sent before this point waits for the default action.
    """
    global _worker_tokenizer, _worker_sep_id, _worker_dtype
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _POOL_SIGNALS)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker; the pool is the parallelism
    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)
    _worker_sep_id = sep_id
    _worker_dtype = np.dtype(dtype)


def encode_chunk(documents: list[str]) -> EncodedChunk:
    """Tokenize (no special tokens), append [SEP] to each document, and hash its normalized text."""
    assert _worker_tokenizer is not None, "encode_chunk runs in a worker set up by _init_worker"
    encode = getattr(_worker_tokenizer, "encode_batch_fast", _worker_tokenizer.encode_batch)  # _fast skips offsets
    flat: list[int] = []
    counts = np.empty(len(documents), dtype=np.int64)
    for i, encoding in enumerate(encode(documents, add_special_tokens=False)):
        ids = encoding.ids
        counts[i] = len(ids)
        flat += ids
        flat.append(_worker_sep_id)
    chars = np.fromiter((len(doc) for doc in documents), dtype=np.int64, count=len(documents))
    digests = b"".join(normalized_digest(doc) for doc in documents)
    return EncodedChunk(np.array(flat, dtype=_worker_dtype), counts, chars, digests)


@contextmanager
def encoder_pool(
    tokenizer: Tokenizer, sep_id: int, dtype: np.dtype, workers: int
) -> Iterator[multiprocessing.pool.Pool]:
    """Worker processes that each hold the tokenizer; start them before any writer threads exist.

    On success the pool is closed and joined (every task is done by then); on any exception or interrupt
    its workers are terminated (`_terminate`), which `_init_worker` makes a plain kill whatever the parent imported.
    """
    start_method = "fork" if sys.platform == "linux" else "spawn"
    init_args = (tokenizer.to_str(), sep_id, dtype.str)
    with _signals_blocked(_POOL_SIGNALS):  # the workers, and the pool's threads that fork replacements, inherit it
        pool = multiprocessing.get_context(start_method).Pool(workers, _init_worker, init_args)
    try:
        yield pool
    except BaseException:
        if _terminate(pool, TERMINATE_PATIENCE_S):
            pool.join()
        raise
    pool.close()
    pool.join()


def _terminate(pool: multiprocessing.pool.Pool, patience_s: float) -> bool:
    """`pool.terminate()`, bounded; True if it finished (the pool can then be joined).

    Pool.terminate can wait for ever on a queue lock that one of the workers it stops holds (CPython issues #78178
    and #73945, open): rarely (not in 460 rounds here), but the suite's 15-round interrupt test hung in two fresh-clone runs. It runs in a
    daemon thread; past `patience_s` the workers are killed and that thread is left blocked
    (a daemon, it does not keep the process alive), so an interrupt always ends.
    """
    stopper = threading.Thread(target=pool.terminate, name="pool-terminate", daemon=True)
    stopper.start()
    stopper.join(patience_s)
    if not stopper.is_alive():
        return True
    for process in list(getattr(pool, "_pool", [])):  # the worker processes (no public accessor)
        process.kill()
    return False


@contextmanager
def _signals_blocked(signals: set[signal.Signals]) -> Iterator[None]:
    """Hold `signals` pending in this thread (and in what it forks or starts meanwhile); deliver them after."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: workers are spawned, nothing is inherited
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def document_chunks(documents: Iterable[str]) -> Iterator[list[str]]:
    """Consecutive documents, cut into lists of about `_CHUNK_CHARS` characters (the unit of work)."""
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


def encoded_chunks(
    pool: multiprocessing.pool.Pool, chunks: Iterable[tuple[list[str], T]], workers: int
) -> Iterator[tuple[EncodedChunk, T]]:
    """Encode (chunk, tag) pairs in `pool`; yield (encoded, tag) in input order, at most 2 per worker in flight."""
    pending: deque[tuple[multiprocessing.pool.AsyncResult, T]] = deque()
    for chunk, tag in chunks:
        pending.append((pool.apply_async(encode_chunk, (chunk,)), tag))
        if len(pending) >= 2 * workers:
            result, first_tag = pending.popleft()
            yield result.get(), first_tag
    while pending:
        result, first_tag = pending.popleft()
        yield result.get(), first_tag
