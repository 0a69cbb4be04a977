"""Tiny causal LMs, their tokenizer and checkpoints, shared by the generation and causal export tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

from composer_bert.models.composer_model import ComposerCausalLM, ComposerMLM
from composer_bert.models.config import ModelConfig
from tests.helpers import BERT_SPECIALS, REPO, load_script_main, save_bert_tokenizer, tiny_model_config
from tests.hf.hf_helpers import perturbed, save_checkpoint_dict

WORDS = "the a cat dog sat ran on in mat park big small red blue ##s ##ed and was is it".split()
VOCAB_SIZE = len(BERT_SPECIALS) + len(WORDS)
SEP = BERT_SPECIALS.index("[SEP]")  # the end-of-text token of causal rows
# Llama's switches (hf/llama.py LLAMA_SWITCHES) on the tiny shape, with Llama's default RMSNorm eps
LLAMA_LIKE = dict(
    norm_type="rmsnorm", ffn_type="swiglu", position_embedding="rotary", embedding_norm=False,
    head_transform=False, decoder_bias=False, norm_eps=1e-6,
)  # fmt: skip


def causal_config(**overrides) -> ModelConfig:
    """A tiny causal config (crammed defaults otherwise: pre-norm LayerNorm, GEGLU, sinusoidal); `overrides` on top."""
    return tiny_model_config(VOCAB_SIZE, objective="causal", type_vocab_size=0, **overrides)


def causal_checkpoint(path: Path, cfg: ModelConfig, tokenizer_dir: Path, seed: int) -> tuple[Path, ComposerCausalLM]:
    """A causal model with weights off their init, saved as recipes/pretrain.py saves it; returns path and model."""
    torch.manual_seed(seed)
    model = ComposerCausalLM(cfg)
    perturbed(model.model, seed + 1)
    return save_checkpoint_dict(path, model, cfg, tokenizer_dir), model.eval()


def mlm_checkpoint(path: Path, tokenizer_dir: Path) -> Path:
    """A masked-LM checkpoint of the tiny shape (what generate.py must refuse)."""
    cfg = tiny_model_config(VOCAB_SIZE)
    return save_checkpoint_dict(path, ComposerMLM(cfg), cfg, tokenizer_dir)


def generate_cli(*args: str) -> str:
    """stdout of recipes/generate.py's `main` run in this process (no second torch import)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_script_main(REPO / "recipes" / "generate.py")(list(args))
    return printed.getvalue()


def export_cli(*args: str) -> str:
    """stdout of recipes/export_hf.py's `main` run in this process."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_script_main(REPO / "recipes" / "export_hf.py")(list(args))
    return printed.getvalue()


def save_word_tokenizer(out: Path) -> Path:
    """The fixed-vocabulary WordPiece tokenizer of WORDS (BERT specials; [SEP] = 3 ends documents) in `out`."""
    return save_bert_tokenizer(out, WORDS)
