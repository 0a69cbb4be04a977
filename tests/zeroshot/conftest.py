"""Fixtures of the zero-shot tests: SuperGLUE folders, a byte-level tokenizer trained on their text, a Llama-like
causal checkpoint and its export, shared by the scorer's tests and the lm-evaluation-harness cross-check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from composer_bert.data.prep.tokenizer_training import save_pretrained_fast, train_tokenizer
from composer_bert.run.config import load_config
from composer_bert.zeroshot.config import ZeroShotConfig
from tests.generation.generation_helpers import LLAMA_LIKE, causal_checkpoint, causal_config, export_cli
from tests.glue.superglue_helpers import write_superglue_dir
from tests.helpers import REPO

RECIPE = REPO / "yamls/zeroshot/superglue.yaml"
PROMPT_WORDS = "Question Answer True False Neither yes no Sentence Is the word used in same way two sentences above because therefore or"


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, Path]:
    """SuperGLUE fixture folders, a byte-level tokenizer trained on their text, a Llama-like checkpoint, its export."""
    root = tmp_path_factory.mktemp("zeroshot")
    data = write_superglue_dir(root / "superglue")
    text = [line for path in sorted(data.rglob("*.jsonl")) for line in path.read_text().splitlines()] + [PROMPT_WORDS]
    tokenizer = root / "tokenizer"
    save_pretrained_fast(train_tokenizer(text * 3, 320, "bytelevel", False), tokenizer)
    cfg = dataclasses.replace(causal_config(**LLAMA_LIKE), vocab_size=320, max_position_embeddings=512)
    checkpoint, _ = causal_checkpoint(root / "gpt.pt", cfg, tokenizer, seed=3)
    export_cli("--checkpoint", str(checkpoint), "--out", str(root / "export"))
    return {"data": data, "checkpoint": checkpoint, "export": root / "export", "root": root}


def zero_shot_cfg(world: dict[str, Path], *overrides: str) -> ZeroShotConfig:
    return load_config(ZeroShotConfig, str(RECIPE), [f"checkpoint={world['checkpoint']}", f"data.path={world['data']}",
                       f"save_folder={world['root'] / 'out'}", "batch_size=5", *overrides])  # fmt: skip


