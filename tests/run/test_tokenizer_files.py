"""The tokenizers boundary: a damaged tokenizer.json (bytes that are not UTF-8, or not JSON) read by GLUE, by the
export and by generation is one line naming its folder, never the Rust library's bare Exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from composer_bert.errors import UserError
from composer_bert.generation.sampling import load_causal_lm
from composer_bert.glue.data import load_tokenizer
from composer_bert.hf.export import _save_tokenizer
from tests.generation.generation_helpers import causal_checkpoint, causal_config, export_cli, save_word_tokenizer
from tests.helpers import tiny_model_config

DAMAGES = {"not UTF-8": b"\xff\xfe{", "not JSON": b"{\"model\": "}


def _damaged(good: Path, into: Path, damage: bytes) -> Path:
    shutil.copytree(good, into)
    (into / "tokenizer.json").write_bytes(damage + (good / "tokenizer.json").read_bytes())
    return into


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_word_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_glue_and_the_export_name_the_damaged_tokenizer(good, tmp_path, damage):
    bad = _damaged(good, tmp_path / "bad", damage)
    with pytest.raises(UserError, match=f"the tokenizer in '{bad}' cannot be read"):
        load_tokenizer(bad)
    with pytest.raises(UserError, match=f"the tokenizer in '{bad}' cannot be read"):
        _save_tokenizer(bad, tiny_model_config(100), tmp_path / "out")


def test_generation_from_an_export_with_a_damaged_tokenizer_is_one_line(good, tmp_path):
    checkpoint, _ = causal_checkpoint(tmp_path / "gpt.pt", causal_config(), good, seed=0)
    export_cli("--checkpoint", str(checkpoint), "--out", str(tmp_path / "export"))
    tokenizer = tmp_path / "export" / "tokenizer.json"
    tokenizer.write_bytes(b"\xff" + tokenizer.read_bytes())
    with pytest.raises(UserError, match="(?i)cannot be read .*utf-8"):
        load_causal_lm(str(tmp_path / "export"))
