"""`model.init_from=hf:DIR`: a fresh pretraining run starts from a transformers BERT's weights (our logits equal
HF's to 1e-5 through this very path), trains on our shards, and a resume keeps its own weights; a model key or
tokenizer that does not match the checkpoint stops the run with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from tests.helpers import REPO, assert_one_error_line, run_cli

PLAIN_BERT = [
    "model.norm_placement=post", "model.final_norm=false", "model.ffn_type=gelu", "model.qkv_bias=true",
    "model.linear_bias=true", "model.position_embedding=learned", "model.sparse_prediction=false",
]  # fmt: skip


def _args(shards: Path, save: Path, init: Path, *extra: str) -> list[str]:
    return [
        "yamls/pretrain/tiny.yaml", f"data.local={shards}", f"save_folder={save}", "model.hidden_size=64",
        "model.intermediate_size=128", "model.max_position_embeddings=64", "global_train_batch_size=16",
        "device_train_microbatch_size=16", "eval_subset_num_batches=1", "loggers.progress_bar=false",
        f"model.init_from=hf:{init}", *PLAIN_BERT, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def hf_bert(tiny_shards, tmp_path_factory) -> Path:
    """A random BertForMaskedLM (weights perturbed off HF's init) saved with the shards' own tokenizer."""
    folder = tmp_path_factory.mktemp("hf_bert")
    tokenizer_dir = json.loads((tiny_shards / "manifest.json").read_text())["tokenizer"]["path"]
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", folder / "tokenizer.json")
    config = BertConfig(
        vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    return folder


def test_fresh_run_starts_from_the_checkpoint_with_equal_logits(tiny_shards, hf_bert, tmp_path):
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.pretrain.trainer import build_trainer
    from composer_bert.run.config import load_config

    overrides = _args(tiny_shards, tmp_path / "run", hf_bert, "max_duration=2ba")
    trainer = build_trainer(load_config(PretrainConfig, REPO / overrides[0], overrides[1:]))
    try:
        ours = trainer.state.model.model.eval()
        hf = BertForMaskedLM.from_pretrained(hf_bert).eval()
        generator = torch.Generator().manual_seed(1)
        input_ids = torch.randint(5, 1024, (3, 24), generator=generator)
        mask = torch.ones_like(input_ids)
        token_types = torch.randint(0, 2, (3, 24), generator=generator)
        with torch.no_grad():
            expected = hf(input_ids=input_ids, attention_mask=mask, token_type_ids=token_types).logits
            got = ours(input_ids, mask, token_types)[..., :1024]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert trainer.state.model.config.init_from is None  # checkpoints carry the architecture, not the path
    finally:
        trainer.close()


@pytest.mark.slow
def test_cli_trains_from_checkpoint_and_resume_does_not_reload(tiny_shards, hf_bert, tmp_path):
    save = tmp_path / "run"
    first = run_cli("recipes/pretrain.py", *_args(tiny_shards, save, hf_bert, "max_duration=3ba"), timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"initialized the model from hf:{hf_bert}" in first.stderr
    again = run_cli("recipes/pretrain.py", *_args(tiny_shards, save, hf_bert, "max_duration=4ba"), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "initialized the model from" not in again.stderr  # resumed from its own checkpoint
    assert json.loads((save / "summary.json").read_text())["batches"] == 4


@pytest.mark.slow
def test_mismatched_model_key_is_one_line(tiny_shards, hf_bert, tmp_path):
    done = run_cli(
        "recipes/pretrain.py", *_args(tiny_shards, tmp_path / "r", hf_bert, "model.num_layers=3"), timeout=300
    )
    assert_one_error_line(done, "model.num_layers", "set model.num_layers=2", after_other_output=True)


@pytest.mark.slow
def test_other_tokenizer_is_one_line(tiny_shards, hf_bert, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(hf_bert, other)
    tokenizer = json.loads((other / "tokenizer.json").read_text())
    tokenizer["added_tokens"][0]["content"] = "[PADDING]"
    (other / "tokenizer.json").write_text(json.dumps(tokenizer))
    done = run_cli("recipes/pretrain.py", *_args(tiny_shards, tmp_path / "r", other), timeout=300)
    assert_one_error_line(done, "different tokenizer", after_other_output=True)


def _build(shards: Path, save: Path, init: Path):
    from composer_bert.pretrain.config import PretrainConfig
    from composer_bert.pretrain.trainer import build_trainer
    from composer_bert.run.config import load_config

    overrides = _args(shards, save, init, "max_duration=2ba")
    return build_trainer(load_config(PretrainConfig, REPO / overrides[0], overrides[1:]))


def test_a_bare_trunk_starts_with_a_fresh_head_and_says_so(tiny_shards, hf_bert, tmp_path, capsys):
    """A BertModel folder (a sentence-embedding checkpoint, say) has no MLM head: the trunk loads, the head is new."""
    from transformers import BertModel

    bare = tmp_path / "bare"
    trunk = BertForMaskedLM.from_pretrained(hf_bert).bert
    BertModel(trunk.config, add_pooling_layer=False).save_pretrained(bare)  # config only: weights come next
    trunk.save_pretrained(bare)
    shutil.copy(hf_bert / "tokenizer.json", bare / "tokenizer.json")
    trainer = _build(tiny_shards, tmp_path / "run", bare)
    try:
        ours = trainer.state.model.model
        expected = trunk.embeddings.word_embeddings.weight
        assert torch.equal(ours.bert.embeddings.tokens.weight[: expected.shape[0]], expected)
        assert torch.equal(ours.head.decoder.bias, torch.zeros_like(ours.head.decoder.bias))  # fresh: BERT's init
        assert f"hf:{bare} has no LM head: the run starts with a freshly initialised head" in capsys.readouterr().out
    finally:
        trainer.close()


def test_a_folder_of_another_model_type_is_one_line(tiny_shards, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from composer_bert.errors import UserError

    llama = tmp_path / "llama"
    config = LlamaConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    LlamaForCausalLM(config).save_pretrained(llama)
    with pytest.raises(UserError, match="holds a 'llama' model; .* BertForMaskedLM or ModernBertForMaskedLM folder only"):
        _build(tiny_shards, tmp_path / "run", llama)
    assert not (tmp_path / "run").exists()
