"""Read an exported Hugging Face directory (or any folder of hf/families.py) back as a `Pretrained`, pick the reader
for a `checkpoint=` value, and check and read `model.init_from=hf:DIR` for pretraining.

`load_pretrained` is what finetuning calls: a directory is an export (this module), anything else a
Composer `.pt` (`composer_bert.run.checkpoint`, which owns that format). This module depends on
`composer_bert.run.checkpoint`, never the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.hf.families import FAMILIES, Family, families_of, folder_model_type
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
    """An exported directory, or any transformers folder of hf/families.py, as `Pretrained`: trunk and LM head only.

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
    elif model_type in FAMILIES:
        model_config, state = FAMILIES[model_type].read(directory, None)
    else:
        known = ", ".join([REMOTE_MODEL_TYPE, *FAMILIES])
        raise UserError(f"'{directory}' holds a '{model_type}' model; only {known} directories load")
    state = {key: value for key, value in state.items() if key.startswith(MLM_KEY_PREFIXES)}
    return Pretrained(model_config, state, directory)


def _read_remote_export(directory: Path, config: dict) -> tuple[ModelConfig, dict[str, Tensor]]:
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    model_config = ModelConfig(**{key: value for key, value in config.items() if key in known})
    state = {key.removeprefix("model."): value for key, value in read_weights(directory).items()}
    has_mlm_head = any(key.startswith("head.") for key in state)
    if has_mlm_head and model_config.tie_embeddings:  # save_pretrained stores the tied decoder weight once
        state.setdefault("head.decoder.weight", state["bert.embeddings.tokens.weight"])
    return model_config, state


def read_weights(directory: Path) -> dict[str, Tensor]:
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
SHAPE_KEYS = (
    "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "type_vocab_size", "pad_token_id",
    "norm_eps", "tie_embeddings", "norm_placement", "final_norm", "norm_type", "embedding_norm", "ffn_type",
    "qkv_bias", "linear_bias", "decoder_bias", "position_embedding", "head_transform", "global_attn_every_n_layers",
    "local_attention", "first_attn_norm",
)  # fmt: skip
# ... and these, unless positions are rotary: then no weight depends on them, and changing them is how a run
# extends its context (ModernBERT's phase 2: sequence 1024 -> 8192, global rotary base 10000 -> 160000).
POSITION_KEYS = ("max_position_embeddings", "rope_theta", "local_rope_theta")


def check_init_from(init_from: str, model_config: ModelConfig, shards_tokenizer_sha256: str) -> tuple[Family, Path]:
    """`model.init_from=hf:DIR` checked without reading its weights: a folder of one of the objective's families
    (hf/families.py: BERT or ModernBERT for a masked LM, Llama for a causal LM) that our model keys describe (a
    mismatch names the key to set), whose tokenizer made the shards (same tokenizer.json sha256). Cheap, so
    pretraining runs it before writing anything.
    """
    from composer_bert.data.contract import tokenizer_fingerprint

    families = families_of(objective(model_config.objective))
    kinds = " or ".join(family.native_class for family in families)
    if not init_from.startswith(INIT_FROM_PREFIX):
        raise UserError(f"model.init_from is '{init_from}'; write hf:DIR (a transformers {kinds} folder)")
    directory = Path(init_from.removeprefix(INIT_FROM_PREFIX))
    model_type = folder_model_type(directory, "model.init_from")
    family = next((family for family in families if family.model_type == model_type), None)
    if family is None:
        raise UserError(
            f"model.init_from: '{directory}' holds a '{model_type}' model; a model with objective "
            f"'{model_config.objective}' starts from a {kinds} folder only"
        )
    theirs = family.read_config(directory, model_config)
    for key in SHAPE_KEYS + (() if model_config.position_embedding == "rotary" else POSITION_KEYS):
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
    return family, directory


def init_state_from_hf(init_from: str, model_config: ModelConfig, shards_tokenizer_sha256: str) -> dict[str, Tensor]:
    """`model.init_from=hf:DIR`'s weights (after `check_init_from`) as the Composer model's keys.

    A folder without an LM head (a bare `BertModel` or `ModernBertModel`, such as a sentence-embedding
    checkpoint) gives no `head.*` weights: the run starts with a freshly initialised head, and says so.
    """
    family, directory = check_init_from(init_from, model_config, shards_tokenizer_sha256)
    state = family.read_state(directory, model_config)
    return {key: value for key, value in state.items() if key.startswith(MLM_KEY_PREFIXES)}
