"""A causal model whose switches are Llama's, as `transformers`' own `LlamaForCausalLM` (no remote code), and back.

Llama is pre-norm RMSNorm, rotary positions with the GPT-NeoX half rotation (Llama's `rotate_half`, base 10000),
SwiGLU, no biases, no embedding norm, a final norm and an LM head without transform; every ModelConfig switch in
`LLAMA_SWITCHES` must say so. The weights map one to one but for two layouts:

- our fused `attn.qkv` holds q, k, v one after the other (rows [q; k; v], heads in order within each): Llama's
  `q_proj`, `k_proj`, `v_proj` are its three row blocks, no permutation (our rotary already rotates halves);
- our SwiGLU `ffn.up` projects to [value; gate] and computes `down(value * silu(gate))`: Llama's
  `down(silu(gate_proj) * up_proj)` takes the first half as `up_proj` and the second as `gate_proj`.

Our embedding and decoder carry `pad_vocab_multiple` padding rows that no token id reaches; the export slices
them off (Llama's vocab_size is ours), and reading back pads them with zeros.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.models.config import HF_SHAPE_FIELDS, ModelConfig

ROTARY_BASE = 10000.0  # models.layers.Rotary's base
LLAMA_SWITCHES = {
    "objective": "causal",
    "norm_placement": "pre",
    "final_norm": True,
    "norm_type": "rmsnorm",
    "embedding_norm": False,
    "ffn_type": "swiglu",
    "position_embedding": "rotary",
    "qkv_bias": False,
    "linear_bias": False,
    "decoder_bias": False,
    "head_transform": False,
    "type_vocab_size": 0,
    "qk_norm": False,
}


def is_llama(cfg: ModelConfig) -> bool:
    """Whether `cfg` computes exactly what a `LlamaForCausalLM` of its shape computes."""
    return all(getattr(cfg, key) == value for key, value in LLAMA_SWITCHES.items())


# The ModelConfig fields a LlamaConfig holds too: ours -> Llama's name (the rest are fixed by LLAMA_SWITCHES).
CONFIG_FIELDS = {**HF_SHAPE_FIELDS, "norm_eps": "rms_norm_eps"}


def llama_config(cfg: ModelConfig, eos_token_id: int | None) -> Any:
    """The `LlamaConfig` of `cfg`: same shape, eps, rotary base and tying; no bos token (our rows start without one)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        **{theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS.items()},
        num_key_value_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        rope_theta=ROTARY_BASE,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
        attention_dropout=cfg.attention_dropout,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        pad_token_id=cfg.pad_token_id,
    )


# Each layer's weights: ours -> Llama's. A fused weight of ours stacks Llama's in this order along its rows, in
# equal blocks (q, k, v: hidden_size rows each; up, gate: intermediate_size each), so one table serves both ways.
LAYER_WEIGHTS = {
    "attn_norm.weight": ("input_layernorm.weight",),
    "attn.qkv.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "attn.out.weight": ("self_attn.o_proj.weight",),
    "ffn_norm.weight": ("post_attention_layernorm.weight",),
    "ffn.up.weight": ("mlp.up_proj.weight", "mlp.gate_proj.weight"),
    "ffn.down.weight": ("mlp.down_proj.weight",),
}


def state_dict_to_llama(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """`CausalLM` weights (keys `bert.*`, `head.*`) as `LlamaForCausalLM` weights (padding rows sliced off), or
    `CausalLMForSequenceClassification` weights (`bert.*`, `classifier.*`) as `LlamaForSequenceClassification`'s."""
    vocab = cfg.vocab_size
    out = {
        "model.embed_tokens.weight": state["bert.embeddings.tokens.weight"][:vocab],
        "model.norm.weight": state["bert.final_norm.weight"],
    }
    if "classifier.weight" in state:
        out["score.weight"] = state["classifier.weight"]
    else:
        out["lm_head.weight"] = state["head.decoder.weight"][:vocab]
    for i in range(cfg.num_layers):
        for ours, theirs in LAYER_WEIGHTS.items():
            blocks = state[f"bert.layers.{i}.{ours}"].chunk(len(theirs))
            out.update({f"model.layers.{i}.{name}": block for name, block in zip(theirs, blocks, strict=True)})
    return {key: value.contiguous() for key, value in out.items()}


def state_dict_from_llama(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """`LlamaForCausalLM` weights as `CausalLM` weights of `cfg` (vocabulary padding rows zero)."""

    def padded(rows: Tensor) -> Tensor:
        return torch.cat([rows, rows.new_zeros(cfg.padded_vocab_size - rows.shape[0], rows.shape[1])])

    embedding = padded(state["model.embed_tokens.weight"])
    out = {"bert.embeddings.tokens.weight": embedding, "bert.final_norm.weight": state["model.norm.weight"]}
    for i in range(cfg.num_layers):
        for ours, theirs in LAYER_WEIGHTS.items():
            out[f"bert.layers.{i}.{ours}"] = torch.cat([state[f"model.layers.{i}.{name}"] for name in theirs])
    # tied: save_pretrained stores the shared matrix once, as the embedding
    out["head.decoder.weight"] = embedding if cfg.tie_embeddings else padded(state["lm_head.weight"])
    return out


def model_config_from_llama(hf_config: Any, base: ModelConfig | None = None) -> ModelConfig:
    """The ModelConfig of a `LlamaConfig`; what our blocks cannot compute (grouped-query attention, rope scaling,
    another rotary base or activation, biases) is one UserError line. `base` supplies the keys Llama has no
    counterpart for (dropouts, pad_vocab_multiple); default: ModelConfig's own."""
    theta = getattr(hf_config, "rope_theta", None)
    rope = getattr(hf_config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", theta)
    scaling = getattr(hf_config, "rope_scaling", None) or {}
    unsupported = {
        "num_key_value_heads": (hf_config.num_key_value_heads, hf_config.num_attention_heads),
        "hidden_act": (hf_config.hidden_act, "silu"),
        "attention_bias": (hf_config.attention_bias, False),
        "mlp_bias": (getattr(hf_config, "mlp_bias", False), False),
        "rope_theta": (theta, ROTARY_BASE),
        "rope_type": (rope.get("rope_type", scaling.get("rope_type", "default")), "default"),
        "head_dim": (getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads,
                     hf_config.hidden_size // hf_config.num_attention_heads),
    }  # fmt: skip
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise UserError(f"the Llama checkpoint has {key}={value!r}; composer-bert's blocks compute only {supported!r}")
    shape = {ours: getattr(hf_config, theirs) for ours, theirs in CONFIG_FIELDS.items()}
    shape["tie_embeddings"] = bool(shape["tie_embeddings"])
    shape["pad_token_id"] = hf_config.pad_token_id if hf_config.pad_token_id is not None else 0
    return dataclasses.replace(base or ModelConfig(), **LLAMA_SWITCHES, **shape, init_from=None)
