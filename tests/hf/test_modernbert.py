"""Configured as ModernBERT and given a transformers ModernBERT's weights, our model computes the same logits and loss."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers

from composer_bert.errors import UserError
from composer_bert.hf.modernbert import (
    is_modernbert,
    model_config_from_modernbert,
    modernbert_config,
    state_dict_from_modernbert,
    state_dict_to_modernbert,
)
from composer_bert.models.bert import BertForMaskedLM
from composer_bert.models.composer_model import ComposerMLM
from composer_bert.schema import validate
from tests.models.model_helpers import padded_ids, randomized, tiny_config

VOCAB = 99  # not a multiple of 64: our embedding and decoder hold 128 rows
SEQ = 24  # longer than the local band (local_attention 8: keys within 4 either side), so local layers differ


def hf_config(attn_implementation: str = "sdpa", **overrides) -> transformers.ModernBertConfig:
    """Four layers, global at 0 and 3 (every 3rd), a band of 8, distinct rotary bases: every switch matters."""
    settings = dict(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96,
        max_position_embeddings=64, global_attn_every_n_layers=3, local_attention=8, global_rope_theta=160000.0,
        local_rope_theta=10000.0, pad_token_id=0, bos_token_id=None, eos_token_id=None, cls_token_id=None,
        sep_token_id=None,
    )  # fmt: skip
    config = transformers.ModernBertConfig(**{**settings, **overrides})
    config._attn_implementation = attn_implementation
    return config



def ours_from(hf: torch.nn.Module, **overrides) -> BertForMaskedLM:
    cfg = dataclasses.replace(model_config_from_modernbert(hf.config), **{"sparse_prediction": False, **overrides})
    model = BertForMaskedLM(cfg).eval()
    model.load_state_dict(state_dict_from_modernbert(hf.state_dict(), cfg), strict=True)
    return model


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    input_ids, attention_mask = padded_ids(generator, (SEQ, 17, 3), SEQ, vocab=VOCAB)
    return dict(input_ids=input_ids, attention_mask=attention_mask)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_mlm_logits_match_transformers(batch, attn_implementation, padded):
    hf = randomized(transformers.ModernBertForMaskedLM(hf_config(attn_implementation)))
    ours = ours_from(hf)
    assert is_modernbert(ours.config) and ours.config.has_local_layers
    mask = batch["attention_mask"] if padded else torch.ones_like(batch["attention_mask"])
    with torch.no_grad():
        expected = hf(input_ids=batch["input_ids"], attention_mask=mask).logits
        got = ours(batch["input_ids"], mask if padded else None)
    real = mask.bool()  # HF computes something at padding too; only real tokens have meaning
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


def test_local_layers_change_the_logits(batch):
    """The equality above would hold by accident if the band never cut anything: widen it and the logits move."""
    hf = randomized(transformers.ModernBertForMaskedLM(hf_config()))
    narrow, wide = ours_from(hf), ours_from(hf, local_attention=2 * SEQ)
    with torch.no_grad():
        assert not torch.allclose(narrow(batch["input_ids"]), wide(batch["input_ids"]), atol=1e-3)


def test_masked_lm_loss_matches_transformers(batch):
    hf = randomized(transformers.ModernBertForMaskedLM(hf_config()))
    ours = ours_from(hf, sparse_prediction=True)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, [2, 11, 20]] = batch["input_ids"][0, [2, 11, 20]]
    labels[1, [0, 16]] = batch["input_ids"][1, [0, 16]]
    labels[2, 1] = 7
    model = ComposerMLM(ours.config)
    model.model = ours
    with torch.no_grad():
        expected = hf(**batch, labels=labels).loss
        ours_batch = dict(batch, labels=labels)
        got = model.loss(model(ours_batch), ours_batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_state_dict_round_trips_exactly(tie):
    hf = randomized(transformers.ModernBertForMaskedLM(hf_config(tie_word_embeddings=tie)))
    cfg = model_config_from_modernbert(hf.config)
    ours = BertForMaskedLM(cfg)
    ours.load_state_dict(state_dict_from_modernbert(hf.state_dict(), cfg), strict=True)
    back = transformers.ModernBertForMaskedLM(modernbert_config(cfg))
    back.load_state_dict(state_dict_to_modernbert(ours.state_dict(), cfg), strict=True)
    for key, tensor in hf.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], tensor, atol=0, rtol=0, msg=key)
    assert model_config_from_modernbert(back.config) == cfg


def test_a_bare_trunk_converts_without_a_head():
    """A ModernBertModel (sentence-embedding checkpoints) has no MLM head: its weights come without `head.*`."""
    trunk = randomized(transformers.ModernBertModel(hf_config()))
    cfg = model_config_from_modernbert(trunk.config)
    state = state_dict_from_modernbert(trunk.state_dict(), cfg)
    assert state and not any(key.startswith("head.") for key in state)
    missing, unexpected = BertForMaskedLM(cfg).load_state_dict(state, strict=False)
    assert unexpected == [] and all(key.startswith("head.") for key in missing)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (dict(hidden_activation="silu"), "hidden_activation='silu'"),
        (dict(norm_bias=True), "attention_bias/mlp_bias/norm_bias/classifier_bias"),
    ],
)
def test_what_our_blocks_cannot_compute_is_one_line(overrides, named):
    with pytest.raises(UserError, match="composer-bert's blocks compute only") as raised:
        model_config_from_modernbert(hf_config(**overrides))
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_an_irregular_layer_pattern_is_one_line():
    config = hf_config()
    config.layer_types = ["full_attention", "sliding_attention", "full_attention", "full_attention"]
    with pytest.raises(UserError, match="global layer every n layers"):
        model_config_from_modernbert(config)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(local_attention=7), "model.local_attention"),
        (dict(local_attention=0), "model.local_attention"),
        (dict(global_attn_every_n_layers=0), "model.global_attn_every_n_layers"),
        (dict(objective="causal", type_vocab_size=0), "model.global_attn_every_n_layers"),
        (dict(position_embedding="alibi"), "model.position_embedding"),
        (dict(position_embedding="rotary", num_heads=16, hidden_size=48), "model.num_heads"),
    ],
)
def test_switches_modernbert_cannot_take_together_are_one_line(overrides, key):
    cfg = tiny_config(**{"global_attn_every_n_layers": 3, "num_layers": 4, "position_embedding": "rotary", **overrides})
    with pytest.raises(UserError, match=key):
        validate(cfg, "model.")


# ------------------------------------------------------------------------------ folders in and out


def test_hf_folder_through_ours_and_back_is_the_same_tensors(tmp_path):
    """A ModernBERT folder read as ours (hf/families.py) and exported again, no training between: identical files."""
    from safetensors.torch import load_file

    from composer_bert.hf.export import export_language_model
    from composer_bert.hf.load import load_exported
    from tests.tokenizer_helpers import modernbert_tokenizer

    folder = modernbert_tokenizer(tmp_path / "hf")
    vocab = len(transformers.PreTrainedTokenizerFast.from_pretrained(str(folder)))
    randomized(transformers.ModernBertForMaskedLM(hf_config(vocab_size=vocab, pad_token_id=400))).save_pretrained(folder)
    pretrained = load_exported(folder)
    assert is_modernbert(pretrained.model_config) and pretrained.model_config.vocab_size == vocab
    out = export_language_model(pretrained.state_dict, pretrained.model_config, folder, tmp_path / "out")
    assert not list(out.glob("*.py")) and json.loads((out / "config.json").read_text())["model_type"] == "modernbert"
    before, after = load_file(folder / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    for key, tensor in before.items():
        assert torch.equal(after[key], tensor), key


def test_a_bare_trunk_folder_reads_without_a_head(tmp_path):
    from composer_bert.hf.load import load_exported

    randomized(transformers.ModernBertModel(hf_config())).save_pretrained(tmp_path)
    state = load_exported(tmp_path).state_dict
    assert state and all(key.startswith("bert.") for key in state)


def test_init_from_lets_a_rotary_model_extend_its_context_but_checks_every_other_key(tmp_path):
    """ModernBERT's phase 2 starts from phase 1 with more positions and a higher global base: no weight changes."""
    from composer_bert.data.contract import tokenizer_fingerprint
    from composer_bert.hf.load import check_init_from
    from tests.tokenizer_helpers import modernbert_tokenizer

    folder = modernbert_tokenizer(tmp_path / "hf")
    vocab = len(transformers.PreTrainedTokenizerFast.from_pretrained(str(folder)))
    model = transformers.ModernBertForMaskedLM(hf_config(vocab_size=vocab, pad_token_id=400))
    model.save_pretrained(folder)
    cfg, sha = model_config_from_modernbert(model.config), tokenizer_fingerprint(folder)
    extended = dataclasses.replace(cfg, max_position_embeddings=8 * cfg.max_position_embeddings, rope_theta=1e6)
    family, _ = check_init_from(f"hf:{folder}", extended, sha)
    assert family.native_class == "ModernBertForMaskedLM"
    with pytest.raises(UserError, match="model.local_attention is 16 .* set model.local_attention=8"):
        check_init_from(f"hf:{folder}", dataclasses.replace(cfg, local_attention=16), sha)


# ------------------------------------------------------------------------------------- classifiers


def test_classifier_matches_transformers_and_exports_as_its_class(batch, tmp_path):
    """`classifier_head: modernbert` is ModernBertForSequenceClassification's head on [CLS]; a GLUE classifier of
    ModernBERT's switches exports as that class, no remote code, with its label names."""
    from composer_bert.hf.export import export_classifier
    from composer_bert.models.bert import BertForSequenceClassification
    from tests.tokenizer_helpers import modernbert_tokenizer

    hf = randomized(transformers.ModernBertForSequenceClassification(hf_config(num_labels=3, vocab_size=406)))
    cfg = model_config_from_modernbert(hf.config)
    ours = BertForSequenceClassification(cfg, num_labels=3).eval()
    ours.load_state_dict(state_dict_from_modernbert(hf.state_dict(), cfg), strict=True)
    with torch.no_grad():
        expected = hf(**batch).logits
        torch.testing.assert_close(ours(batch["input_ids"], batch["attention_mask"]), expected, atol=1e-5, rtol=1e-5)

    tokenizer = modernbert_tokenizer(tmp_path / "tokenizer")
    out = export_classifier(ours, cfg, 3, tokenizer, tmp_path / "out", label_names=["no", "maybe", "yes"])
    assert not list(out.glob("*.py"))
    back = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert type(back).__name__ == "ModernBertForSequenceClassification" and back.config.id2label[2] == "yes"
    with torch.no_grad():
        torch.testing.assert_close(back(**batch).logits, expected, atol=1e-5, rtol=1e-5)


def test_a_bert_pooler_classifier_of_modernbert_switches_exports_as_remote_code(tmp_path):
    from composer_bert.hf.export import export_classifier
    from composer_bert.models.bert import BertForSequenceClassification
    from tests.tokenizer_helpers import modernbert_tokenizer

    cfg = dataclasses.replace(model_config_from_modernbert(hf_config(vocab_size=406)), classifier_head="pooler")
    out = export_classifier(BertForSequenceClassification(cfg, 2), cfg, 2, modernbert_tokenizer(tmp_path / "t"), tmp_path / "o")
    assert json.loads((out / "config.json").read_text())["model_type"] == "composer_bert" and list(out.glob("*.py"))
