"""Fixtures of the data tests: a tokenizer trained here, for the converter tests to share."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer_bert.data.synthetic import synthetic_documents
from composer_bert.data.tokenizer_training import train_tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """WordPiece 4096 on synthetic text: tokens/characters ~0.23, under the default 0.25 cutoff."""
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(synthetic_documents(3000, seed=0), 4096, progress=False).save(str(out / "tokenizer.json"))
    return out
