"""Weights to and from Hugging Face `transformers` BERT, for the equivalence proof and for export.

Our layout differs from Hugging Face's in three ways: module names, one fused QKV projection where
HF has query/key/value, and embedding/decoder rows padded to `pad_vocab_multiple`. Besides the MLM
model, a sequence classifier's pooler and classifier convert too (`BertForSequenceClassification`).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor
from transformers import BertConfig

from composer_bert.models.config import ModelConfig

# Our module path -> HF's, outside the layers.
_MODULES = {
    "bert.embeddings.tokens": "bert.embeddings.word_embeddings",
    "bert.embeddings.positions": "bert.embeddings.position_embeddings",
    "bert.embeddings.token_types": "bert.embeddings.token_type_embeddings",
    "bert.embeddings.norm": "bert.embeddings.LayerNorm",
    "head.transform.dense": "cls.predictions.transform.dense",
    "head.transform.norm": "cls.predictions.transform.LayerNorm",
    "head.decoder": "cls.predictions.decoder",
    "pooler": "bert.pooler.dense",
    "classifier": "classifier",
}
# Our module path inside layer i -> HF's inside bert.encoder.layer.i (QKV is split/fused separately).
_LAYER_MODULES = {
    "attn.out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn.up": "intermediate.dense",
    "ffn.down": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_VOCAB_ROWS = (
    "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.weight",
    "cls.predictions.decoder.bias",
)
_QKV = ("query", "key", "value")


def is_plain_bert(cfg: ModelConfig) -> bool:
    """Whether `cfg` is original BERT's architecture, i.e. whether HF `BertForMaskedLM` can hold its weights."""
    return (
        cfg.norm_placement == "post"
        and not cfg.final_norm
        and cfg.norm_type == "layernorm"
        and cfg.embedding_norm
        and cfg.ffn_type == "gelu"
        and cfg.qkv_bias
        and cfg.linear_bias
        and cfg.decoder_bias
        and cfg.position_embedding == "learned"
        and cfg.head_transform
        and cfg.type_vocab_size > 0
        and not cfg.qk_norm
    )


# Our ModelConfig field -> HF BertConfig's, for what both configs hold; the rest is fixed by is_plain_bert.
_CONFIG_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
    "type_vocab_size": "type_vocab_size",
    "pad_token_id": "pad_token_id",
    "norm_eps": "layer_norm_eps",
    "tie_embeddings": "tie_word_embeddings",
    "init_std": "initializer_range",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
}
# Original BERT's switches (what is_plain_bert requires) for a config made from an HF BertConfig.
_PLAIN_BERT = dict(
    norm_placement="post",
    final_norm=False,
    norm_type="layernorm",
    embedding_norm=True,
    ffn_type="gelu",
    qkv_bias=True,
    linear_bias=True,
    decoder_bias=True,
    position_embedding="learned",
    sparse_prediction=False,
    head_transform=True,
)


def model_config_from_hf(hf_cfg: BertConfig) -> ModelConfig:
    """Our config of an HF BERT: post-norm, learned positions, biases everywhere, GELU, dense decoder."""
    if hf_cfg.hidden_act != "gelu" or getattr(hf_cfg, "position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with hidden_act='gelu' and absolute position embeddings converts")
    shared = {ours: getattr(hf_cfg, theirs) for ours, theirs in _CONFIG_FIELDS.items()}
    classifier_dropout = hf_cfg.classifier_dropout
    return ModelConfig(
        **shared,
        **_PLAIN_BERT,
        embedding_dropout=hf_cfg.hidden_dropout_prob,
        classifier_dropout=hf_cfg.hidden_dropout_prob if classifier_dropout is None else classifier_dropout,
    )


def hf_config_from_model_config(cfg: ModelConfig) -> BertConfig:
    """The HF `BertConfig` of a plain-BERT `cfg` (raises ValueError for any other architecture)."""
    if not is_plain_bert(cfg):
        raise ValueError("only the original BERT architecture (see is_plain_bert) has a transformers BertConfig")
    shared = {theirs: getattr(cfg, ours) for ours, theirs in _CONFIG_FIELDS.items()}
    return BertConfig(**shared, hidden_act="gelu", classifier_dropout=cfg.classifier_dropout)


def state_dict_to_hf_bert(state_dict: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """Our `BertForMaskedLM` / `BertForSequenceClassification` state dict -> HF's (vocab rows unpadded)."""
    if not is_plain_bert(cfg):
        raise ValueError("only the original BERT architecture (see is_plain_bert) converts to transformers BERT")
    hf_sd = {}
    for key, tensor in state_dict.items():
        module, param = key.rsplit(".", 1)
        layer = re.fullmatch(r"bert\.layers\.(\d+)\.(.+)", module)
        if layer is None:
            hf_sd[f"{_MODULES[module]}.{param}"] = tensor
        elif layer[2] == "attn.qkv":
            for name, part in zip(_QKV, tensor.chunk(3), strict=True):
                hf_sd[f"bert.encoder.layer.{layer[1]}.attention.self.{name}.{param}"] = part
        else:
            hf_sd[f"bert.encoder.layer.{layer[1]}.{_LAYER_MODULES[layer[2]]}.{param}"] = tensor
    for key in _VOCAB_ROWS:
        if key in hf_sd:
            hf_sd[key] = hf_sd[key][: cfg.vocab_size]
    if "cls.predictions.decoder.bias" in hf_sd:  # HF registers the decoder bias under both names
        hf_sd["cls.predictions.bias"] = hf_sd["cls.predictions.decoder.bias"]
    return hf_sd


def state_dict_from_hf_bert(hf_sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """HF `BertForMaskedLM` / `BertForSequenceClassification` state dict -> ours (vocab rows zero-padded).

    Accepts `save_pretrained` output too, where the tied decoder weight and duplicate bias may be absent.
    """
    hf_sd = {k: v for k, v in hf_sd.items() if k != "bert.embeddings.position_ids"}
    if "cls.predictions.bias" in hf_sd:
        hf_sd.setdefault("cls.predictions.decoder.bias", hf_sd.pop("cls.predictions.bias"))
    if "cls.predictions.decoder.bias" in hf_sd and cfg.tie_embeddings:
        hf_sd.setdefault("cls.predictions.decoder.weight", hf_sd["bert.embeddings.word_embeddings.weight"])
    for key in _VOCAB_ROWS:
        if key in hf_sd:
            hf_sd[key] = _pad_rows(hf_sd[key], cfg.padded_vocab_size)
    to_ours = {hf: ours for ours, hf in _MODULES.items()}
    to_ours_in_layer = {hf: ours for ours, hf in _LAYER_MODULES.items()}
    state_dict, qkv_parts = {}, {}
    for key, tensor in hf_sd.items():
        module, param = key.rsplit(".", 1)
        layer = re.fullmatch(r"bert\.encoder\.layer\.(\d+)\.(.+)", module)
        if layer is None and module in to_ours:
            state_dict[f"{to_ours[module]}.{param}"] = tensor
        elif layer is not None and layer[2] in to_ours_in_layer:
            state_dict[f"bert.layers.{layer[1]}.{to_ours_in_layer[layer[2]]}.{param}"] = tensor
        elif layer is not None and layer[2].startswith("attention.self."):
            qkv_parts[(layer[1], layer[2].removeprefix("attention.self."), param)] = tensor
        else:
            raise ValueError(f"no counterpart for Hugging Face BERT weight '{key}'")
    for index, param in {(index, param) for index, _, param in qkv_parts}:
        fused = [qkv_parts[(index, name, param)] for name in _QKV]
        state_dict[f"bert.layers.{index}.attn.qkv.{param}"] = torch.cat(fused)
    return state_dict


def _pad_rows(tensor: Tensor, rows: int) -> Tensor:
    padding = tensor.new_zeros(rows - tensor.shape[0], *tensor.shape[1:])
    return torch.cat((tensor, padding))
