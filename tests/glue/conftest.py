"""Fixtures of the GLUE tests: a tiny pretrained checkpoint, and tiny tasks in the GLUE download layout."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from composer_bert.models import ComposerMLM
from tests.glue.glue_helpers import STSB_HEADER, WORDS, sentence, write_tsv
from tests.helpers import save_bert_tokenizer, save_mlm_checkpoint, tiny_model_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A pretraining checkpoint in the format recipes/pretrain.py writes: one MLM step, RunMetadata attached."""
    root = tmp_path_factory.mktemp("pretrained")
    tokenizer_dir = save_bert_tokenizer(root / "tokenizer", trained_on=[" ".join(WORDS)] * 8, vocab_size=100)
    model_config = tiny_model_config(100)
    torch.manual_seed(0)
    input_ids = torch.randint(5, 100, (4, 16))
    labels = torch.full_like(input_ids, -100)
    labels[:, 3] = input_ids[:, 3]
    batch = [
        {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": lab}
        for ids, lab in zip(input_ids, labels, strict=True)
    ]
    model = ComposerMLM(model_config)
    save_mlm_checkpoint(model, model_config, tokenizer_dir, batch, root / "ckpt", batch_size=4, batches=1)
    return next((root / "ckpt").glob("ep*-ba1-rank0.pt"))


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """SST-2, STS-B, MNLI and RTE in the GLUE download layout, with labels a tiny model can partly learn."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(0)
    for split, size in (("train", 64), ("dev", 32)):
        rows = [[text, str(int("good" in text or "great" in text))] for text in (sentence(rng) for _ in range(size))]
        write_tsv(root / "SST-2" / f"{split}.tsv", rows, ["sentence", "label"])
        pairs = [(sentence(rng), sentence(rng)) for _ in range(size)]
        rows = [
            [str(i), "g", "f", "y", "o", "s", "s", a, b, f"{5 * len(set(a.split()) & set(b.split())) / 9:.2f}"]
            for i, (a, b) in enumerate(pairs)
        ]
        write_tsv(root / "STS-B" / f"{split}.tsv", rows, STSB_HEADER)
        rows = [[str(i), a, b, rng.choice(["entailment", "not_entailment"])] for i, (a, b) in enumerate(pairs[:16])]
        write_tsv(root / "RTE" / f"{split}.tsv", rows, ["index", "sentence1", "sentence2", "label"])
    labels = ["entailment", "neutral", "contradiction"]
    for file in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        rows = [
            [str(i), sentence(rng), sentence(rng), rng.choice(labels)] for i in range(32 if file == "train.tsv" else 12)
        ]
        write_tsv(root / "MNLI" / file, rows, ["index", "sentence1", "sentence2", "gold_label"])
    return root
