"""Model hyperparameters: one BERT encoder whose switches cover crammed BERT, MosaicBERT and original BERT."""

from __future__ import annotations

from dataclasses import dataclass

from composer_bert.fields import choice


@dataclass
class ModelConfig:
    """Defaults are Cramming's crammed BERT; `yamls/pretrain/*.yaml` switch them per recipe.

    `intermediate_size` is the width the feed-forward's output projection reads, as in MosaicBERT: a GLU
    (geglu, swiglu) projects to twice that and halves it again. Cramming's crammed BERT (its `intermed_size`
    3072 with GLU) is therefore intermediate_size 1536 here. LayerNorm biases follow `linear_bias`.
    """

    vocab_size: int | None = 32768  # None: take it from the shards' manifest
    hidden_size: int = 768
    num_layers: int = 16
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0: no token type embeddings (token_type_ids are then ignored)
    pad_token_id: int = 0
    norm_placement: str = choice("pre", ["pre", "post"])
    final_norm: bool = True  # a norm after the last block; pre-norm models need it
    norm_type: str = choice("layernorm", ["layernorm", "rmsnorm"])
    norm_eps: float = 1e-12
    embedding_norm: bool = True
    ffn_type: str = choice("geglu", ["gelu", "geglu", "swiglu"])
    qkv_bias: bool = False
    linear_bias: bool = False
    decoder_bias: bool = True
    position_embedding: str = choice("sinusoidal", ["learned", "sinusoidal", "rotary", "alibi"])
    tie_embeddings: bool = True
    pad_vocab_multiple: int = 64  # embedding/decoder rows rounded up so the decoder matmul is aligned
    sparse_prediction: bool = True  # the MLM head runs only on masked positions
    head_transform: bool = True  # BERT's dense + GELU + norm before the decoder
    init_std: float = 0.02
    embedding_dropout: float = 0.0
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    classifier_dropout: float = 0.1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def padded_vocab_size(self) -> int:
        multiple = max(self.pad_vocab_multiple, 1)
        return -(-self.vocab_size // multiple) * multiple


def check_model_config(cfg: ModelConfig) -> None:
    """Raise ValueError for shapes no model can be built from (the schema checks names and choices)."""
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is None: the trainer fills it from the shard manifest before building")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"model.hidden_size {cfg.hidden_size} is not divisible by model.num_heads {cfg.num_heads}")
    if cfg.position_embedding == "rotary" and cfg.head_dim % 2:
        raise ValueError(f"rotary positions need an even head dimension, got {cfg.head_dim}")
