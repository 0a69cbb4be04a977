"""Read an exported Hugging Face directory back as a `Pretrained`, and pick the reader for a `checkpoint=` value.

`load_pretrained` is what finetuning calls: a directory is an export (this module), anything else a
Composer `.pt` (`composer_bert.checkpoint`, which owns that format). This module depends on
`composer_bert.checkpoint`, never the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import Tensor

from composer_bert.checkpoint import Pretrained, load_composer_checkpoint
from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig

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
    else:
        raise UserError(f"'{directory}' holds a '{model_type}' model; only composer_bert and bert directories load")
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
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        return load_file(directory / "model.safetensors")
    if index.is_file():
        state: dict[str, Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(directory / shard))
        return state
    if (directory / "pytorch_model.bin").is_file():
        return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise UserError(f"'{directory}' has no model.safetensors or pytorch_model.bin; re-export the model")
