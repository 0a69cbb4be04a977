"""Helpers the GLUE tests share: TSV files in the GLUE download layout, and a tiny finetuning run."""

from __future__ import annotations

import random
from pathlib import Path

from composer_bert.glue.config import FinetuneConfig
from composer_bert.glue.results import GlueSummary
from composer_bert.glue.runner import run_glue
from composer_bert.run.config import load_config
from tests.helpers import REPO

RECIPE = REPO / "yamls/finetune/glue.yaml"
RECIPE_CLI = REPO / "recipes/finetune_glue.py"
WORDS = "the a cat dog sat ran on under mat rug good bad film movie great dull fun boring red blue big small".split()
STSB_HEADER = [
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
    "score",
]


def sentence(rng: random.Random) -> str:
    """3 to 9 of WORDS: text the tiny tokenizer (trained on WORDS) reads without [UNK]."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def write_tsv(path: Path, rows: list[list[str]], header: list[str] | None = None, bom: bool = False) -> Path:
    """A tab-separated GLUE file (folders made as needed), optionally with a header and a byte order mark."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + rows
    path.write_text(("\ufeff" if bom else "") + "".join("\t".join(row) + "\n" for row in lines), encoding="utf-8")
    return path


def tiny_run(checkpoint: Path, glue_dir: Path, save_folder: Path, *overrides: str) -> GlueSummary:
    """The GLUE recipe on the GLUE-layout `glue_dir`: one epoch, 32 tokens, no progress bar unless overridden."""
    cfg = load_config(
        FinetuneConfig,
        str(RECIPE),
        [
            f"checkpoint={checkpoint}",
            f"save_folder={save_folder}",
            "data.source=glue_dir",
            f"data.path={glue_dir}",
            "epochs=1",
            "max_seq_length=32",
            "device_eval_batch_size=16",
            "progress_bar=false",
            *overrides,
        ],
    )
    return run_glue(cfg)
