"""Session fixtures shared by the end-to-end tests: a tokenizer and shards built by our own CLIs.

Shared helper functions live in `tests/helpers.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Synthetic corpus -> WordPiece tokenizer -> seq-64 MDS shards, through the real data_prep scripts."""
    root = tmp_path_factory.mktemp("shards")
    tokenizer = root / "tokenizer"
    shards = root / "data"
    step = run_cli(
        "data_prep/train_tokenizer.py", "--source", "synthetic:3000", "--vocab-size", "1024", "--out", str(tokenizer)
    )
    assert step.returncode == 0, step.stderr
    step = run_cli(
        "data_prep/convert_dataset.py", "--source", "synthetic:6000", "--tokenizer", str(tokenizer),
        "--seq-len", "64", "--out", str(shards), "--val-fraction", "0.05", "--no-ratio-filter",
    )
    assert step.returncode == 0, step.stderr
    return shards


@pytest.fixture(scope="session")
def tiny_causal_shards(tiny_shards) -> Path:
    """The same corpus and tokenizer as `tiny_shards`, as seq-64 shards for a causal LM (`--objective causal`)."""
    shards = tiny_shards.parent / "causal"
    step = run_cli(
        "data_prep/convert_dataset.py", "--source", "synthetic:6000", "--tokenizer", str(tiny_shards.parent / "tokenizer"),
        "--seq-len", "64", "--out", str(shards), "--val-fraction", "0.05", "--no-ratio-filter", "--objective", "causal",
    )
    assert step.returncode == 0, step.stderr
    return shards
