"""The ModernBERT recipes (yamls/pretrain/modernbert-*.yaml, yamls/finetune/glue-modernbert.yaml): each validates,
each model section is exactly a ModernBertForMaskedLM of ModernBERT-base's shape, and the numbers converted from
the published token counts agree with them. Config-only, apart from one model built on the meta device."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers

from composer_bert.glue.config import FinetuneConfig
from composer_bert.hf.modernbert import is_modernbert, model_config_from_modernbert
from composer_bert.models.bert import BertForMaskedLM
from composer_bert.pretrain.config import PretrainConfig
from composer_bert.run.config import load_config
from tests.helpers import REPO

PRETRAIN = ["modernbert-base", "modernbert-base-8k", "modernbert-continue"]
# ModernBERT's published run, in tokens (AnswerDotAI/ModernBERT yamls/modernbert/modernbert-base-*.yaml)
PHASE1, WARMUP, BATCH_WARMUP = 1_719_000_000_000, 3_000_000_000, 50_000_000_000
EXTENSION, DECAY = 250_000_000_000, 50_000_000_000


def recipe(name: str) -> PretrainConfig:
    return load_config(PretrainConfig, REPO / f"yamls/pretrain/{name}.yaml")


def released_base(cfg: PretrainConfig):
    """ModernBERT-base as transformers' ModernBertConfig defaults describe it, in our keys (the recipe fills the rest)."""
    return model_config_from_modernbert(transformers.ModernBertConfig(), base=cfg.model)


@pytest.mark.parametrize("name", PRETRAIN)
def test_recipe_is_a_plain_modernbert(name):
    cfg = recipe(name)
    assert is_modernbert(cfg.model), f"{name}: exports as remote code, not as a ModernBertForMaskedLM"


@pytest.mark.parametrize("name", ["modernbert-base-8k", "modernbert-continue"])
def test_recipe_describes_the_released_checkpoint(name):
    """model.init_from checks these keys against the folder: they must be ModernBERT-base's (8192, theta 160000)."""
    cfg = recipe(name)
    theirs = released_base(cfg)
    assert dataclasses.replace(cfg.model, init_from=None, classifier_dropout=theirs.classifier_dropout) == theirs


def test_phase_one_differs_from_the_release_only_in_length_and_global_theta():
    cfg = recipe("modernbert-base")
    theirs = released_base(cfg)
    assert (cfg.model.max_position_embeddings, cfg.model.rope_theta) == (1024, 10000.0)
    extended = dataclasses.replace(cfg.model, max_position_embeddings=8192, rope_theta=160000.0)
    assert dataclasses.replace(extended, classifier_dropout=theirs.classifier_dropout) == theirs


def test_modernbert_base_has_149m_parameters():
    with torch.device("meta"):
        model = BertForMaskedLM(recipe("modernbert-base").model)
    # transformers' ModernBertForMaskedLM(ModernBertConfig()) counts the same 149,655,232 (tied decoder, its bias
    # included); ModernBERT-base is published as 149M
    assert sum(param.numel() for param in model.parameters()) == 149_655_232


def test_published_token_counts_as_fractions():
    base, extension = recipe("modernbert-base"), recipe("modernbert-base-8k")
    assert int(base.max_duration.removesuffix("tok")) == PHASE1
    assert base.scheduler.warmup_fraction == pytest.approx(WARMUP / PHASE1, rel=1e-4)
    assert base.batch_ramp.ramp_fraction == pytest.approx(BATCH_WARMUP / PHASE1, rel=1e-4)
    assert base.batch_ramp.final_global_batch_size == 4608
    assert int(extension.max_duration.removesuffix("tok")) == EXTENSION + DECAY
    assert extension.scheduler.decay_fraction == pytest.approx(DECAY / (EXTENSION + DECAY), rel=1e-4)
    # context extension keeps the tokens per batch: 576 rows of 8192 = 4608 rows of 1024
    assert extension.global_train_batch_size * 8192 == base.batch_ramp.final_global_batch_size * 1024


def test_glue_modernbert_recipe_validates():
    cfg = load_config(
        FinetuneConfig, REPO / "yamls/finetune/glue-modernbert.yaml", ["checkpoint=hf:models/ModernBERT-base"]
    )
    shared = cfg.shared_hparams()
    assert (shared.epochs, shared.lr, shared.global_train_batch_size, shared.weight_decay) == (2, 8e-5, 32, 8e-6)
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.betas == [0.9, 0.98] and cfg.optimizer.eps == 1e-6
    assert [hparams.lr for hparams in map(cfg.hparams_for, cfg.selected_tasks())] == [8e-5] * 8
