"""Rows of token ids: the tokenizer they are made with, and the MDS writer that packs them into shards.

Each row is exactly seq_len tokens: [CLS], then seq_len - 1 tokens of the packed stream (each document
followed by [SEP]); a document may continue from one row into the next, and the trailing partial row
is dropped and counted. Causal-LM rows (`--objective causal`) have no [CLS]: all seq_len tokens are the
packed stream, and each document is followed by its end-of-text token. [CLS], [SEP] and end-of-text are the
tokenizer's own tokens for those roles (tokenizer_roles.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from composer_bert.data.contract import SHARD_HASH, row_dtype, tokenizer_fingerprint
from composer_bert.data.prep import tokenizer_roles
from composer_bert.errors import UserError
from composer_bert.objectives import DEFAULT_OBJECTIVE
from composer_bert.run.files import write_errors


@dataclass
class TokenizerInfo:
    """What shards must record about the tokenizer that made them."""

    path: Path
    tokenizer: Tokenizer
    sha256: str
    vocab_size: int
    special_ids: dict[str, int]  # role -> id, every role the tokenizer has (tokenizer_roles.py)
    row_start_id: int | None  # the [CLS]-like id each row starts with; None for rows without one
    separator_id: int  # the id after each document: [SEP]-like, or end-of-text for causal rows

    @property
    def dtype(self) -> np.dtype:
        return row_dtype(self.vocab_size)


def load_tokenizer(tokenizer_dir: str | Path, objective_name: str = DEFAULT_OBJECTIVE) -> TokenizerInfo:
    """Load `DIR/tokenizer.json`, any Hugging Face tokenizer folder, and check it has the special tokens the rows of
    `objective_name` need; which tokens those are the folder says (tokenizer_roles.py)."""
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
    special_ids = tokenizer_roles.special_ids(path, tokenizer.token_to_id)
    tokenizer_roles.check_roles(path, special_ids, objective_name)
    row_start_id, separator_id = tokenizer_roles.row_ids(special_ids, objective_name)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    return TokenizerInfo(path.resolve(), tokenizer, sha256, vocab_size, special_ids, row_start_id, separator_id)


def row_mds_writer(out: Path, dtype: np.dtype, size_limit: int = 1 << 26) -> Any:
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

    # xxh64 of each shard in index.json: a shard damaged in a bucket is caught on download (data.remote)
    return RowMDSWriter(
        out=str(out), columns={"input_ids": f"ndarray:{dtype.name}"}, compression=None, hashes=[SHARD_HASH],
        size_limit=size_limit,
    )


class RowWriter:
    """Packs one split's token stream into rows of seq_len, [CLS]-led unless cls_id is None, and writes them to MDS."""

    def __init__(
        self, out: Path, seq_len: int, cls_id: int | None, dtype: np.dtype, what: str, size_limit: int = 1 << 26
    ) -> None:
        self.what = what  # names the output in a write error (a full disk): the final --out, not the staging dir
        with write_errors(what):
            self.writer = row_mds_writer(out, dtype, size_limit)
        self.body = seq_len - (cls_id is not None)  # tokens of the stream per row
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
        if self.cls_id is not None:
            rows[:, 0] = self.cls_id
        rows[:, self.seq_len - self.body :] = buffer[: num_rows * self.body].reshape(num_rows, self.body)
        self.carry = buffer[num_rows * self.body :].copy()
        with write_errors(self.what):
            for row in rows:
                self.writer.write({"input_ids": row})
        self.rows += num_rows

    def finish(self) -> dict[str, int]:
        with write_errors(self.what):
            self.writer.finish()
        return {"rows": self.rows, "tokens": self.rows * self.seq_len, "documents": self.documents}
