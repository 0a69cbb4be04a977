"""Read an exported Hugging Face directory back as a `Pretrained`, and pick the reader for a `checkpoint=` value.

`load_pretrained` is what finetuning calls: a directory is an export (this module), anything else a
Composer `.pt` (`composer_bert.run.checkpoint`, which owns that format). This module depends on
`composer_bert.run.checkpoint`, never the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.objectives import objective
from composer_bert.run.checkpoint import Pretrained, load_composer_checkpoint

REMOTE_MODEL_TYPE = "composer_bert"  # ComposerBertConfig.model_type, without importing transformers
MLM_KEY_PREFIXES = ("bert.", "head.")  # what `Pretrained.state_dict` holds: keys of `ComposerMLM.model`


def load_pretrained(path: str) -> Pretrained:
    """A Composer `.pt` (local or remote) or an exported Hugging Face directory."""
    if Path(path).is_dir():
        return load_exported(path)
    return load_composer_checkpoint(path)


def load_exported(path: str | Path) -> Pretrained:
    """An exported (or any transformers BERT) directory as `Pretrained`: encoder and MLM head weights only.

    Keys follow `ComposerMLM.model` (`bert.*`, plus `head.*` when the export has an MLM head); a classifier
    export's pooler and classifier are left out, as finetuning starts a fresh head.
    """
    directory = Path(path)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise UserError(f"'{directory}' has no config.json; pass a directory written by recipes/export_hf.py")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"'{config_path}' is not valid JSON ({err}); re-export the model") from None
    model_type = config.get("model_type")
    if model_type == REMOTE_MODEL_TYPE:
        model_config, state = _read_remote_export(directory, config)
    elif model_type == "bert":
        model_config, state = _read_bert_export(directory)
    elif model_type == "llama":
        model_config, state = _read_llama_export(directory)
    else:
        raise UserError(
            f"'{directory}' holds a '{model_type}' model; only composer_bert, bert and llama directories load"
        )
    state = {key: value for key, value in state.items() if key.startswith(MLM_KEY_PREFIXES)}
    return Pretrained(model_config, state, directory)


def _read_remote_export(directory: Path, config: dict) -> tuple[ModelConfig, dict[str, Tensor]]:
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    model_config = ModelConfig(**{key: value for key, value in config.items() if key in known})
    state = {key.removeprefix("model."): value for key, value in _read_weights(directory).items()}
    has_mlm_head = any(key.startswith("head.") for key in state)
    if has_mlm_head and model_config.tie_embeddings:  # save_pretrained stores the tied decoder weight once
        state.setdefault("head.decoder.weight", state["bert.embeddings.tokens.weight"])
    return model_config, state


def _read_llama_export(directory: Path, base: ModelConfig | None = None) -> tuple[ModelConfig, dict[str, Tensor]]:
    """A `LlamaForCausalLM` folder (ours or any whose shape our blocks compute) as `CausalLM` weights."""
    from transformers import LlamaConfig

    from composer_bert.hf.llama import model_config_from_llama, state_dict_from_llama

    model_config = model_config_from_llama(LlamaConfig.from_pretrained(str(directory)), base)
    try:
        return model_config, state_dict_from_llama(_read_weights(directory), model_config)
    except KeyError as err:
        raise UserError(f"'{directory}' lacks the Llama weight {err}; save a complete LlamaForCausalLM") from None


def _read_bert_export(directory: Path) -> tuple[ModelConfig, dict[str, Tensor]]:
    from transformers import BertConfig

    from composer_bert.models.hf_bert import model_config_from_hf, state_dict_from_hf_bert

    try:
        model_config = model_config_from_hf(BertConfig.from_pretrained(str(directory)))
    except ValueError as err:
        raise UserError(f"'{directory}': {str(err).splitlines()[0]}") from None
    hf_state = {
        key: value for key, value in _read_weights(directory).items() if not key.startswith("cls.seq_relationship.")
    }
    try:
        return model_config, state_dict_from_hf_bert(hf_state, model_config)
    except (ValueError, KeyError) as err:
        raise UserError(f"'{directory}' is not a BERT checkpoint this package reads: {err}") from None


def _read_weights(directory: Path) -> dict[str, Tensor]:
    """All tensors of a `save_pretrained` directory: one or sharded safetensors, or a pytorch_model.bin."""
    from composer_bert.run.weights_files import read_safetensors  # safetensors' failures: one line

    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        return read_safetensors(directory / "model.safetensors")
    if index.is_file():
        state: dict[str, Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(read_safetensors(directory / shard))
        return state
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise UserError(f"'{directory}' has no model.safetensors or pytorch_model.bin; re-export the model")


INIT_FROM_PREFIX = "hf:"
# Keys that shape the weights: each must equal the checkpoint's (dropout, init_std, sparse_prediction and
# pad_vocab_multiple do not change what the weights mean, so they stay the recipe's).
_SHAPE_KEYS = (
    "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings",
    "type_vocab_size", "pad_token_id", "norm_eps", "tie_embeddings", "norm_placement", "final_norm", "norm_type",
    "embedding_norm", "ffn_type", "qkv_bias", "linear_bias", "decoder_bias", "position_embedding", "head_transform",
)  # fmt: skip


def init_state_from_hf(init_from: str, model_config: ModelConfig, shards_tokenizer_sha256: str) -> dict[str, Tensor]:
    """`model.init_from=hf:DIR`: the weights of an HF BERT (MLM head included) as `ComposerMLM.model` keys, or for
    a causal model those of a `LlamaForCausalLM` (such as our Llama export) as `ComposerCausalLM.model` keys.

    Our model keys must describe the checkpoint's architecture (a mismatch names the key to set), and the
    shards must be tokenized by the checkpoint's own tokenizer (same tokenizer.json sha256).
    """
    from composer_bert.data.contract import tokenizer_fingerprint

    entry = objective(model_config.objective)
    kind = entry.native_class
    if not init_from.startswith(INIT_FROM_PREFIX):
        raise UserError(f"model.init_from is '{init_from}'; write hf:DIR (a transformers {kind} folder)")
    directory = Path(init_from.removeprefix(INIT_FROM_PREFIX))
    if not (directory / "config.json").is_file():
        raise UserError(f"model.init_from: '{directory}' has no config.json; pass a transformers {kind} folder")
    model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    if model_type != entry.hf_model_type:
        raise UserError(
            f"model.init_from: '{directory}' holds a '{model_type}' model; a model with objective "
            f"'{model_config.objective}' starts from a {kind} folder only"
        )
    theirs, read_state = _INIT_READERS[entry.hf_model_type](directory, model_config)
    for key in _SHAPE_KEYS:
        if getattr(model_config, key) != getattr(theirs, key):
            raise UserError(
                f"model.{key} is {getattr(model_config, key)!r} but the checkpoint in '{directory}' has "
                f"{getattr(theirs, key)!r}; set model.{key}={getattr(theirs, key)}"
            )
    if not (directory / "tokenizer.json").is_file():
        raise UserError(f"model.init_from: '{directory}' has no tokenizer.json to compare with the shards' tokenizer")
    if tokenizer_fingerprint(directory) != shards_tokenizer_sha256:
        raise UserError(
            f"the shards were built with a different tokenizer than the checkpoint in '{directory}'; "
            "rebuild the shards with that checkpoint's tokenizer (data_prep/convert_dataset.py --tokenizer DIR)"
        )
    return read_state()


def _bert_init(directory: Path, model_config: ModelConfig) -> tuple[ModelConfig, Callable[[], dict[str, Tensor]]]:
    """A transformers BERT folder's config, and a reader of its weights (MLM head included) as our keys."""
    from composer_bert.models.hf_bert import state_dict_from_hf_bert

    def read_state() -> dict[str, Tensor]:
        hf_state = {key: value for key, value in _read_weights(directory).items() if not key.startswith("cls.seq_rel")}
        if not any(key.startswith("cls.predictions.") for key in hf_state):
            raise UserError(f"model.init_from: '{directory}' has no MLM head (cls.predictions); save a BertForMaskedLM")
        try:
            return state_dict_from_hf_bert(hf_state, model_config)
        except (ValueError, KeyError) as err:
            raise UserError(f"model.init_from: '{directory}' is not a BERT checkpoint this package reads: {err}") from None

    return _read_bert_config(directory), read_state


def _llama_init(directory: Path, model_config: ModelConfig) -> tuple[ModelConfig, Callable[[], dict[str, Tensor]]]:
    """A LlamaForCausalLM folder's config (read over ours) and its weights as our keys."""
    theirs, llama_state = _read_llama_export(directory, base=model_config)
    return theirs, lambda: llama_state


# An objective's `hf_model_type` -> the reader of such a folder for `model.init_from`.
_INIT_READERS = {"bert": _bert_init, "llama": _llama_init}


def _read_bert_config(directory: Path) -> ModelConfig:
    from transformers import BertConfig

    from composer_bert.models.hf_bert import model_config_from_hf

    try:
        return model_config_from_hf(BertConfig.from_pretrained(str(directory)))
    except ValueError as err:
        raise UserError(f"'{directory}': {str(err).splitlines()[0]}") from None
