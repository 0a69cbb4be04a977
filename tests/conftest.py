"""Session fixtures shared by the end-to-end tests: a tokenizer and shards built by our own CLIs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 600):
    """Run a repo script with this interpreter; return the CompletedProcess (never raises on exit code)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
