"""Session fixtures shared by the end-to-end tests (a tokenizer and shards built by our own CLIs), and the
`stack` marker.

Shared helper functions live in `tests/helpers.py`."""

from __future__ import annotations

import os
from pathlib import Path

# The suite runs offline, as its machines do: set before transformers, datasets and huggingface_hub are imported
# (they read these once), and inherited by every script a test starts. Without them a Hub lookup that a test
# expects to fail retried for 23 s first. Tests of the online branches patch `datasets.config` themselves.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

import pytest  # noqa: E402

from tests.helpers import run_cli, tiny_args  # noqa: E402

# The tests whose outcome depends on the stack (torch, transformers, tokenizers versions). The pinned stack runs
# the whole suite; the current stack runs only these (`make test-current`: `pytest -m stack`), since what else
# the suite checks (configs, data prep, the loader, GLUE bookkeeping, refusals, launchers, buckets) runs the same
# code on both. Paths relative to the repo: a folder takes every test under it, `FILE::test_name` one test.
STACK_DEPENDENT = (
    "tests/hf/",  # transformers model classes, remote code, safetensors, both majors' tokenizer files
    "tests/models/",  # SDPA kernels and numerics, transformers BERT/Llama equivalence, torch.compile of the models
    "tests/generation/",  # the KV cache against transformers, exported Llama generation
    "tests/pretrain/test_compile.py",  # torch.compile of the training step: one graph, no host reads
    "tests/pretrain/test_init_from.py::test_fresh_run_starts_from_the_checkpoint_with_equal_logits",  # HF folders in
    # Composer's checkpoint save and load on this torch: bit-exact resume
    "tests/pretrain/test_resume.py::test_truncated_latest_checkpoint_falls_back_to_the_older_one_bit_exactly",
    "tests/run/test_fsdp.py",  # FSDP2 in torch.distributed
    "tests/data/prep/test_tokenizer_training.py",  # tokenizers
    "tests/glue/test_hf_checkpoints.py::test_hf_bert_checkpoint_scores_two_tasks_then_rerun_skips",  # GLUE from
    "tests/glue/test_hf_checkpoints.py::test_hf_roberta_checkpoint_scores_two_tasks_then_rerun_skips",  # transformers
    "tests/glue/test_hf_checkpoints.py::test_hf_decoder_checkpoint_pads_with_end_of_text_and_reads_the_last_token",
    "tests/glue/test_finetune_causal.py",  # our causal classifier as transformers' LlamaForSequenceClassification
    "tests/zeroshot/test_zero_shot.py::test_answer_loglikelihoods_equal_transformers_one_request_at_a_time",
    "tests/run/test_tokenizer_files.py",  # tokenizers' errors on damaged files, through transformers
    "tests/test_stacks.py",  # exports crossing between the two stacks
    "tests/test_release_artifacts.py",  # old checkpoints through this torch's loader
    "tests/optim/test_muon.py::test_the_muon_update_is_torch_optim_muons",  # torch.optim.Muon: torch >= 2.9 only
)
# ... but not these, which check our own refusals through the same code on both stacks
STACK_INDEPENDENT = (
    "tests/hf/test_export.py::test_checkpoint_format_does_not_import_the_hf_package",
    "tests/generation/test_generate.py::test_bad_sampling_settings_are_one_line",
)


# The files that take longest, longest first (seconds of one worker, pinned stack, 2-core machine: 210, 194, 135,
# 133, 115, 102, 94, 75, 65). Under `--dist loadfile --no-loadscope-reorder` (the Makefile's) each pytest-xdist
# worker takes the next whole file in collection order, so these start first and the many short files even out
# the end; in path order, a 2-minute file drawn last kept one worker busy while the other had finished.
SLOWEST_FILES = (
    "tests/pretrain/test_pretrain.py",
    "tests/run/test_object_store.py",
    "tests/test_docs.py",
    "tests/run/test_fsdp.py",
    "tests/test_gpu_check.py",
    "tests/run/test_multinode.py",
    "tests/pretrain/test_resume.py",
    "tests/run/test_loggers.py",  # ~100 s since the paused-MLflow-server test (58 s) joined the trackers' run
    "tests/glue/test_hf_checkpoints.py",
    "tests/test_modernbert_flow.py",
    "tests/hf/test_export_causal.py",
    "tests/zeroshot/test_lm_eval_crosscheck.py",
    "tests/glue/test_superglue_finetune.py",
)


def _listed(path: str, test: str, entries: tuple[str, ...]) -> bool:
    return any(
        entry in (path, f"{path}::{test}") or (entry.endswith("/") and path.startswith(entry)) for entry in entries
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the stack-dependent tests; put the slowest files first (a stable sort: each file keeps its order)."""
    root = Path(config.rootpath)
    rank = {}
    for item in items:
        path, test = Path(item.fspath).relative_to(root).as_posix(), item.originalname
        if _listed(path, test, STACK_DEPENDENT) and not _listed(path, test, STACK_INDEPENDENT):
            item.add_marker(pytest.mark.stack)
        rank[item] = SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)
    items.sort(key=rank.__getitem__)


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
