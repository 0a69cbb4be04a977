"""Helpers the GLUE tests share: TSV files in the GLUE download layout, and a tiny finetuning run."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import torch

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


# Adam moves an element by about the learning rate per step: GLUE's 4e-5 over the tests' 2 to 4 steps.
FINETUNE_DRIFT = 5e-4


def assert_encoder_finetuned_from(
    classifier: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor], *, other: Mapping[str, torch.Tensor]
) -> None:
    """The encoder of a finetuned classifier file (its `model.bert.*` tensors) holds the values of the pretraining
    checkpoint it started from: no element moved by more than FINETUNE_DRIFT (a few finetuning steps), and some
    moved. `other`, another checkpoint of the same run, lies farther from it than that: the check tells the
    checkpoints apart. Weights from another checkpoint, fresh ones, or tensors gathered from the wrong shards fail."""
    encoder = sorted(key for key in pretrained if key.startswith("model.bert."))
    assert encoder and sorted(key for key in classifier if key.startswith("model.bert.")) == encoder

    def farthest(weights: Mapping[str, torch.Tensor]) -> float:
        return max((weights[key].double() - pretrained[key].double()).abs().max().item() for key in encoder)

    moved, apart = farthest(classifier), farthest(other)
    assert 0 < moved <= FINETUNE_DRIFT < apart, f"finetuning moved an element by {moved:.2e}, the other checkpoint {apart:.2e}"
