"""Model hyperparameters: one BERT encoder whose switches cover crammed BERT, MosaicBERT and original BERT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


def choice(default: Any, choices: list[Any]) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass
class ModelConfig:
    """Defaults are Cramming's crammed BERT; `yamls/pretrain/*.yaml` switch them per recipe."""

    vocab_size: Optional[int] = 32768  # None: take it from the shards' manifest
    hidden_size: int = 768
    num_layers: int = 16
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0
    norm_placement: str = choice("pre", ["pre", "post"])
    final_norm: bool = True
    norm_type: str = choice("layernorm", ["layernorm", "rmsnorm"])
    norm_eps: float = 1e-12
    embedding_norm: bool = True
    ffn_type: str = choice("geglu", ["gelu", "geglu", "swiglu"])
    qkv_bias: bool = False
    linear_bias: bool = False
    decoder_bias: bool = True
    position_embedding: str = choice("sinusoidal", ["learned", "sinusoidal", "rotary", "alibi"])
    tie_embeddings: bool = True
    pad_vocab_multiple: int = 64
    sparse_prediction: bool = True
    head_transform: bool = True
    init_std: float = 0.02
    embedding_dropout: float = 0.0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    classifier_dropout: float = 0.1
