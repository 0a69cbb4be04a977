"""Shards from any Hugging Face tokenizer folder: special-token roles read from the folder (never assumed ids),
recorded in manifest.json and used by the rows and the MLM collator; a tokenizer lacking a role is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from composer_bert.batch import IGNORE_INDEX
from composer_bert.data.contract import ShardContract, read_manifest, tokenizer_fingerprint
from composer_bert.data.load.config import DataConfig
from composer_bert.data.prep.rows import load_tokenizer
from composer_bert.data.prep.synthetic import synthetic_documents
from composer_bert.data.prep.tokenizer_training import save_pretrained_fast, train_tokenizer
from composer_bert.errors import UserError
from tests.data.shard_helpers import read_rows, split_loader
from tests.helpers import REPO, assert_one_error_line, run_cli
from tests.tokenizer_helpers import (
    ENDOFTEXT,
    MODERNBERT_ROLES,
    MODERNBERT_SPECIALS,
    byte_level_bpe,
    modernbert_tokenizer,
    save_hf_folder,
)

CONVERT_CLI = REPO / "data_prep" / "convert_dataset.py"
@pytest.fixture(scope="module")
def modernbert_like(tmp_path_factory) -> Path:
    return modernbert_tokenizer(tmp_path_factory.mktemp("modernbert"))


@pytest.fixture(scope="module")
def gpt2_like(tmp_path_factory) -> Path:
    roles = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT}
    return save_hf_folder(byte_level_bpe([ENDOFTEXT]), tmp_path_factory.mktemp("gpt2"), **roles)


def convert_cli(tokenizer: Path, out: Path, *args: str):
    return run_cli(
        CONVERT_CLI, "--source", "synthetic:400", "--tokenizer", tokenizer, "--out", out, "--seq-len", 32,
        "--no-ratio-filter", "--workers", 1, "--no-progress", *args, timeout=120,
    )  # fmt: skip


def role_ids(folder: Path) -> dict[str, int]:
    """Role -> id as transformers reads the folder: the tokenizer's own answer."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast.from_pretrained(str(folder))
    ids = {role: getattr(hf, f"{role}_token_id") for role in ("cls", "sep", "mask", "pad", "unk", "bos", "eos")}
    return {role: token_id for role, token_id in ids.items() if token_id is not None}


# ---------------------------------------------------------------- a ModernBERT-like folder, end to end


def test_modernbert_like_folder_builds_mlm_shards_masked_with_its_own_ids(modernbert_like, tmp_path):
    out = tmp_path / "shards"
    result = convert_cli(modernbert_like, out)
    assert result.returncode == 0, result.stderr[-3000:]
    contract = ShardContract.read(out)
    specials = contract.special_ids
    assert contract.tokenizer_sha256 == tokenizer_fingerprint(modernbert_like)
    with pytest.raises(UserError, match="different tokenizer"):  # a model whose checkpoint has another tokenizer
        contract.check_model(contract.vocab_size, "mlm", "0" * 64)
    assert specials == role_ids(modernbert_like)
    assert specials == {"cls": 402, "sep": 403, "mask": 405, "pad": 400, "unk": 401}  # none of 0..4
    rows = read_rows(out / "train")
    assert (rows[:, 0] == specials["cls"]).all()
    assert (rows[:, 1:] == specials["sep"]).any() and not np.isin(rows[:, 1:], [0, 1, 2, 3, 4, 404]).all()

    cfg = DataConfig(local=str(out), num_workers=0, shuffle=False)
    loader = split_loader(cfg, split="train", device_batch_size=16, seed=0, vocab_size=None)
    batches = [batch for _, batch in zip(range(8), loader, strict=False)]
    input_ids = np.concatenate([batch["input_ids"].numpy() for batch in batches])
    labels = np.concatenate([batch["labels"].numpy() for batch in batches])
    masked = labels != IGNORE_INDEX
    assert masked.sum() > 50
    assert not np.isin(labels[masked], list(specials.values())).any()  # a special token is never masked...
    assert not masked[np.isin(input_ids, [specials["cls"], specials["sep"]])].any()  # ...and stays itself
    assert not masked[:, 0].any()
    assert (input_ids[masked] == specials["mask"]).mean() > 0.6  # the 80% of masked positions given [MASK]
    assert (input_ids[~masked] != specials["mask"]).all()


# ---------------------------------------------------------------- refusals, in one line


def test_a_folder_without_a_mask_token_is_refused_in_one_line_and_writes_nothing(tmp_path):
    roles = {f"{role}_token": token for role, token in MODERNBERT_ROLES.items() if role != "mask"}
    folder = save_hf_folder(byte_level_bpe(MODERNBERT_SPECIALS[:-1]), tmp_path / "no_mask", **roles)
    out = tmp_path / "shards"
    assert_one_error_line(convert_cli(folder, out), str(folder), "no mask token (mask_token)", "--objective mlm")
    assert not out.exists()


def test_gpt2_like_folder_builds_causal_shards_and_is_refused_for_mlm(gpt2_like, tmp_path):
    out = tmp_path / "causal"
    result = convert_cli(gpt2_like, out, "--objective", "causal")
    assert result.returncode == 0, result.stderr[-3000:]
    endoftext = role_ids(gpt2_like)["eos"]
    assert read_manifest(out)["tokenizer"]["special_tokens"] == {"bos": endoftext, "eos": endoftext, "unk": endoftext}
    rows = read_rows(out / "train")
    assert (rows == endoftext).any() and rows.max() <= endoftext  # documents end with <|endoftext|>, no [CLS]

    refused = convert_cli(gpt2_like, tmp_path / "mlm")
    assert_one_error_line(refused, "no mask token", "no padding token", "--objective causal")
    assert not (tmp_path / "mlm").exists()


def test_a_folder_without_any_end_of_text_token_is_refused_for_causal(tmp_path):
    folder = save_hf_folder(byte_level_bpe(["[MASK]"]), tmp_path / "bare", mask_token="[MASK]")
    with pytest.raises(UserError, match=r"no end-of-text token \(eos_token, or sep_token\)"):
        load_tokenizer(folder, "causal")


def test_a_role_whose_token_is_not_in_the_vocabulary_is_refused(modernbert_like, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((modernbert_like / "tokenizer.json").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<mask>", "cls_token": "[CLS]"}))
    with pytest.raises(UserError, match=r"names mask_token '<mask>', which is not in its tokenizer.json vocabulary"):
        load_tokenizer(folder)
    (folder / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_tokenizer(folder)


# ---------------------------------------------------------------- where roles are read from


def test_roles_read_from_added_token_objects_and_special_tokens_map_which_wins(modernbert_like, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((modernbert_like / "tokenizer.json").read_bytes())
    added = {"content": "[MASK]", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    config = {"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": added, "pad_token": "[PAD]", "unk_token": None}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<|padding|>"}}))
    info = load_tokenizer(folder)
    assert info.special_ids == {"cls": 402, "sep": 403, "mask": 405, "pad": 400}  # no unk: null names none
    assert (info.row_start_id, info.separator_id) == (402, 403)


def test_our_own_folder_and_a_bare_tokenizer_json_give_the_same_roles(tmp_path):
    tokenizer = train_tokenizer(synthetic_documents(200, seed=0), vocab_size=300, progress=False)
    bare, saved = tmp_path / "bare", tmp_path / "saved"
    bare.mkdir()
    tokenizer.save(str(bare / "tokenizer.json"))
    save_pretrained_fast(tokenizer, saved)
    ours = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    for folder in (bare, saved):
        info = load_tokenizer(folder)
        assert info.special_ids == ours, folder
        assert (info.row_start_id, info.separator_id) == (2, 3)
        assert load_tokenizer(folder, "causal").separator_id == 3  # no eos: [SEP] ends each document


def test_causal_rows_end_documents_with_eos_before_sep(modernbert_like, tmp_path):
    """The end-of-text token is the one generation stops at (contract.end_of_text_id): eos when there is one."""
    folder = tmp_path / "both"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((modernbert_like / "tokenizer.json").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({"sep_token": "[SEP]", "eos_token": "[PAD]"}))
    assert load_tokenizer(folder, "causal").separator_id == 404
    assert load_tokenizer(folder, "causal").row_start_id is None
