"""Session fixtures shared by the end-to-end tests (a tokenizer and shards built by our own CLIs), and the
`stack` marker.

Shared helper functions live in `tests/helpers.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_args

# The tests whose outcome depends on the stack (torch, transformers, tokenizers versions). The pinned stack runs
# the whole suite; the current stack runs only these (`make test-current`: `pytest -m stack`), since what else
# the suite checks (configs, data prep, the loader, GLUE bookkeeping, launchers, buckets) runs the same code
# on both. Paths relative to the repo; a folder takes every test under it.
STACK_DEPENDENT = (
    "tests/hf/",  # transformers model classes, remote code, safetensors, both majors' tokenizer files
    "tests/models/",  # SDPA kernels and numerics, transformers BERT/Llama equivalence, torch.compile of the models
    "tests/pretrain/test_compile.py",  # torch.compile of the training step: one graph, no host reads
    "tests/pretrain/test_init_from.py",  # transformers folders in
    "tests/pretrain/test_resume.py",  # Composer's checkpoint save and load on this torch: bit-exact resume
    "tests/run/test_fsdp.py",  # FSDP2 in torch.distributed
    "tests/data/prep/test_tokenizer_training.py",  # tokenizers
    "tests/glue/test_hf_checkpoints.py",  # GLUE from transformers folders
    "tests/generation/",  # the KV cache against transformers, exported Llama generation
    "tests/test_stacks.py",  # exports crossing between the two stacks
    "tests/test_release_artifacts.py",  # old checkpoints through this torch's loader
)


def pytest_collection_modifyitems(config, items) -> None:
    root = Path(config.rootpath)
    for item in items:
        path = Path(item.fspath).relative_to(root).as_posix()
        if any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in STACK_DEPENDENT):
            item.add_marker(pytest.mark.stack)


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


@pytest.fixture(scope="session")
def tiny_run(tiny_shards, tmp_path_factory) -> tuple[Path, str]:
    """A finished 120-batch `tiny` (MLM) run through recipes/pretrain.py, and what it printed. Shared by every
    test that reads a finished run; they copy it before changing anything."""
    out = tmp_path_factory.mktemp("runs") / "tiny-mlm"
    result = run_cli("recipes/pretrain.py", *tiny_args(tiny_shards, out, "max_duration=120ba", "eval_interval=60ba"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="session")
def tiny_causal_run(tiny_causal_shards, tmp_path_factory) -> tuple[Path, str]:
    """A finished 60-batch `gpt-tiny` (causal) run through recipes/pretrain.py, and what it printed."""
    out = tmp_path_factory.mktemp("runs") / "tiny-causal"
    args = tiny_args(tiny_causal_shards, out, "max_duration=60ba", "eval_interval=30ba", objective="causal")
    result = run_cli("recipes/pretrain.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout
