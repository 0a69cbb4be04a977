"""Configured as original BERT and given a transformers BERT's weights, our model computes the same logits."""

from __future__ import annotations

import pytest
import torch
import transformers

from composer_bert.models.bert import BertForMaskedLM, BertForSequenceClassification, masked_positions
from composer_bert.models.config import ModelConfig
from composer_bert.models.hf_bert import (
    hf_config_from_model_config,
    is_plain_bert,
    model_config_from_hf,
    state_dict_from_hf_bert,
    state_dict_to_hf_bert,
)
from tests.models.model_helpers import padded_ids, randomized

VOCAB = 99  # not a multiple of 64: our embedding and decoder hold 128 rows


def hf_config(attn_implementation: str = "eager", **overrides) -> transformers.BertConfig:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=32, **overrides,
    )
    config._attn_implementation = attn_implementation
    return config



@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    input_ids, attention_mask = padded_ids(generator, (16, 9, 4), 16, vocab=VOCAB)
    token_type_ids = torch.randint(0, 2, (3, 16), generator=generator)
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_mlm_logits_match_transformers(batch, attn_implementation, padded):
    hf = randomized(transformers.BertForMaskedLM(hf_config(attn_implementation)))
    cfg = model_config_from_hf(hf.config)
    ours = BertForMaskedLM(cfg).eval()
    ours.load_state_dict(state_dict_from_hf_bert(hf.state_dict(), cfg))
    mask = batch["attention_mask"] if padded else torch.ones_like(batch["attention_mask"])
    with torch.no_grad():
        expected = hf(input_ids=batch["input_ids"], attention_mask=mask, token_type_ids=batch["token_type_ids"]).logits
        got = ours(batch["input_ids"], mask, batch["token_type_ids"])
    real = mask.bool()  # HF computes something at padding too; only real tokens have meaning
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


def test_sparse_prediction_matches_transformers_on_masked_positions(batch):
    hf = randomized(transformers.BertForMaskedLM(hf_config()))
    cfg = model_config_from_hf(hf.config)
    cfg.sparse_prediction = True
    ours = BertForMaskedLM(cfg).eval()
    ours.load_state_dict(state_dict_from_hf_bert(hf.state_dict(), cfg))
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, 3] = labels[1, 5] = labels[2, 1] = 1
    with torch.no_grad():
        expected = hf(**batch).logits[labels != -100]
        got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], masked_positions(labels, 1))
    torch.testing.assert_close(got.flatten(0, 1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_state_dict_round_trips_exactly(tie):
    hf = randomized(transformers.BertForMaskedLM(hf_config(tie_word_embeddings=tie)))
    cfg = model_config_from_hf(hf.config)
    ours = BertForMaskedLM(cfg)
    ours.load_state_dict(state_dict_from_hf_bert(hf.state_dict(), cfg))
    assert ours.bert.embeddings.tokens.weight.shape[0] == 128
    back = transformers.BertForMaskedLM(hf_config_from_model_config(cfg))
    back.load_state_dict(state_dict_to_hf_bert(ours.state_dict(), cfg), strict=True)
    # transformers 5 ties cls.predictions.bias to the decoder's bias only with tied embeddings; untied, forward
    # never reads it, and the round trip gives it the decoder's bias (the one forward reads), as transformers 4 does.
    head = hf.cls.predictions
    unread = set() if head.bias is head.decoder.bias else {"cls.predictions.bias"}
    for key, tensor in hf.state_dict().items():
        expected = head.decoder.bias if key in unread else tensor
        torch.testing.assert_close(back.state_dict()[key], expected, atol=0, rtol=0, msg=key)


def test_saved_checkpoint_without_tied_duplicates_converts():
    """`save_pretrained` drops the tied decoder weight and the duplicate decoder bias."""
    hf = randomized(transformers.BertForMaskedLM(hf_config()))
    cfg = model_config_from_hf(hf.config)
    full = state_dict_from_hf_bert(hf.state_dict(), cfg)
    saved = {k: v for k, v in hf.state_dict().items() if k not in ("cls.predictions.decoder.weight", "cls.predictions.bias")}
    slim = state_dict_from_hf_bert(saved, cfg)
    assert slim.keys() == full.keys() and all(torch.equal(slim[k], full[k]) for k in full)


def test_classifier_matches_transformers(batch):
    hf = randomized(transformers.BertForSequenceClassification(hf_config(num_labels=3)))
    cfg = model_config_from_hf(hf.config)
    ours = BertForSequenceClassification(cfg, num_labels=3).eval()
    ours.load_state_dict(state_dict_from_hf_bert(hf.state_dict(), cfg))
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch), hf(**batch).logits, atol=1e-5, rtol=1e-5)
    back_config = hf_config_from_model_config(cfg)
    back_config.num_labels = 3
    back = transformers.BertForSequenceClassification(back_config)
    back.load_state_dict(state_dict_to_hf_bert(ours.state_dict(), cfg), strict=True)


def test_only_plain_bert_converts():
    assert not is_plain_bert(ModelConfig())  # crammed BERT: pre-norm, GEGLU, no biases, sinusoidal
    assert is_plain_bert(model_config_from_hf(hf_config()))
    with pytest.raises(ValueError, match="original BERT"):
        state_dict_to_hf_bert({}, ModelConfig())
    with pytest.raises(ValueError, match="no counterpart"):
        state_dict_from_hf_bert({"bert.encoder.layer.0.crossattention.weight": torch.zeros(1)}, model_config_from_hf(hf_config()))
