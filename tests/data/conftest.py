"""Fixtures of the data tests: a tokenizer trained here, for the converter tests to share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.shard_helpers import save_synthetic_tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """WordPiece 4096 on synthetic text: tokens/characters ~0.23, under the default 0.25 cutoff."""
    return save_synthetic_tokenizer(tmp_path_factory.mktemp("tokenizer"), documents=3000, vocab_size=4096)
