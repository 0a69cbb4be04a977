"""A masked LM whose switches are ModernBERT's, as `transformers`' own `ModernBertForMaskedLM` (no remote code), and back.

ModernBERT (Warner et al., 2024) is pre-norm LayerNorm without biases, an embedding norm and no norm before layer
0's attention, rotary positions with a global and a local base, local attention (a band of `local_attention`
tokens) in every layer but each `global_attn_every_n_layers`-th, GeGLU, a final norm, and an MLM head of dense,
GELU, norm and a decoder (with bias) tied to the embeddings. Every switch in `MODERNBERT_SWITCHES` must say so.
The weights map one to one but for:

- our GeGLU `ffn.up` holds [value; gate] and computes `down(value * gelu(gate))`; ModernBERT's `mlp.Wi` holds
  [input; gate] and computes `Wo(gelu(input) * gate)`: the two halves swap;
- our embedding and decoder carry `pad_vocab_multiple` padding rows, sliced off on export and zero on import.

transformers 4 names the layer pattern and rotary bases `global_attn_every_n_layers`, `global_rope_theta` and
`local_rope_theta`; transformers 5 keeps them as constructor arguments but stores `layer_types` and
`rope_parameters`. `model_config_from_modernbert` reads both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from composer_bert.errors import UserError
from composer_bert.models.config import HF_SHAPE_FIELDS, ModelConfig

MODERNBERT_SWITCHES = {
    "objective": "mlm",
    "norm_placement": "pre",
    "final_norm": True,
    "norm_type": "layernorm",
    "embedding_norm": True,
    "first_attn_norm": False,
    "ffn_type": "geglu",
    "position_embedding": "rotary",
    "head_transform": True,
    "type_vocab_size": 0,
    "qk_norm": False,
}
# The ModelConfig fields a ModernBertConfig holds under another name (the layer pattern and thetas: see above).
CONFIG_FIELDS = {
    **HF_SHAPE_FIELDS,
    **{name: name for name in ("norm_eps", "local_attention", "decoder_bias", "embedding_dropout", "attention_dropout",
                               "classifier_dropout")},
}  # fmt: skip
# ModernBERT's separate bias switches; our qkv_bias and linear_bias must cover them: all equal.
BIAS_FIELDS = ("attention_bias", "mlp_bias", "norm_bias", "classifier_bias")


def is_modernbert(cfg: ModelConfig) -> bool:
    """Whether `cfg` computes exactly what a `ModernBertForMaskedLM` of its shape computes."""
    switches = all(getattr(cfg, key) == value for key, value in MODERNBERT_SWITCHES.items())
    return switches and cfg.qkv_bias == cfg.linear_bias and cfg.hidden_dropout == 0.0


def modernbert_config(cfg: ModelConfig, special_ids: dict[str, int] | None = None) -> Any:
    """The `ModernBertConfig` of `cfg`; `special_ids` (role -> id, from the tokenizer) name cls/sep/pad."""
    from transformers import ModernBertConfig

    ids = special_ids or {}
    return ModernBertConfig(
        **{theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS.items()},
        **dict.fromkeys(BIAS_FIELDS, cfg.linear_bias),
        hidden_activation="gelu",
        classifier_activation="gelu",
        global_attn_every_n_layers=cfg.global_attn_every_n_layers,
        global_rope_theta=cfg.rope_theta,
        local_rope_theta=cfg.local_rope_theta,
        mlp_dropout=0.0,
        pad_token_id=cfg.pad_token_id,
        cls_token_id=ids.get("cls"),
        bos_token_id=ids.get("cls"),
        sep_token_id=ids.get("sep"),
        eos_token_id=ids.get("sep"),
        sparse_prediction=False,
    )


def both_majors_keys(cfg: ModelConfig) -> dict[str, Any]:
    """The layer pattern and rotary bases under transformers 4's names. transformers 5 writes only `layer_types` and
    `rope_parameters`, which 4 ignores (it would fall back to its defaults: a global layer every 3rd, base 160000);
    5 reads these names too, so config.json holding both means the same model to either major."""
    return {
        "global_attn_every_n_layers": cfg.global_attn_every_n_layers,
        "global_rope_theta": cfg.rope_theta,
        "local_rope_theta": cfg.local_rope_theta,
    }


def _layer_weights(cfg: ModelConfig, index: int) -> dict[str, str]:
    """Layer `index`'s weights: ours -> ModernBERT's (no attn_norm in layer 0)."""
    names = {"attn_norm": "attn_norm", "attn.qkv": "attn.Wqkv", "attn.out": "attn.Wo", "ffn_norm": "mlp_norm",
             "ffn.up": "mlp.Wi", "ffn.down": "mlp.Wo"}  # fmt: skip
    if index == 0:
        del names["attn_norm"]
    params = ("weight", "bias") if cfg.linear_bias else ("weight",)
    return {
        f"bert.layers.{index}.{ours}.{param}": f"model.layers.{index}.{theirs}.{param}"
        for ours, theirs in names.items()
        for param in (("weight",) if ours == "attn.qkv" and not cfg.qkv_bias else params)
    }


def _weight_names(cfg: ModelConfig) -> dict[str, str]:
    """Every weight but the vocabulary-sized ones: ours -> ModernBERT's."""
    params = ("weight", "bias") if cfg.linear_bias else ("weight",)
    outer = {"bert.embeddings.norm": "model.embeddings.norm", "bert.final_norm": "model.final_norm",
             "head.transform.dense": "head.dense", "head.transform.norm": "head.norm"}  # fmt: skip
    names = {f"{ours}.{param}": f"{theirs}.{param}" for ours, theirs in outer.items() for param in params}
    for index in range(cfg.num_layers):
        names.update(_layer_weights(cfg, index))
    return names


def _swap_halves(weight: Tensor) -> Tensor:
    first, second = weight.chunk(2)
    return torch.cat([second, first])


def _classifier_names(cfg: ModelConfig) -> dict[str, str]:
    """A classifier's weights (`classifier_head: modernbert`) after the trunk: ours -> ModernBertForSequenceClassification's."""
    params = ("weight", "bias") if cfg.linear_bias else ("weight",)
    names = {f"pooler.{part}.{param}": f"head.{part}.{param}" for part in ("dense", "norm") for param in params}
    return {**names, "classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"}


def state_dict_to_modernbert(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """`BertForMaskedLM` weights of a ModernBERT config as `ModernBertForMaskedLM` weights (padding rows sliced off),
    or `BertForSequenceClassification` weights (they have `classifier.weight`) as `ModernBertForSequenceClassification`'s."""
    vocab = cfg.vocab_size
    classifier = "classifier.weight" in state
    names = {ours: theirs for ours, theirs in _weight_names(cfg).items() if not (classifier and ours.startswith("head."))}
    out = {theirs: state[ours] for ours, theirs in {**names, **(_classifier_names(cfg) if classifier else {})}.items()}
    for key in [key for key in out if ".mlp.Wi." in key]:
        out[key] = _swap_halves(out[key])
    out["model.embeddings.tok_embeddings.weight"] = state["bert.embeddings.tokens.weight"][:vocab]
    if not classifier:
        out["decoder.weight"] = state["head.decoder.weight"][:vocab]
        if cfg.decoder_bias:
            out["decoder.bias"] = state["head.decoder.bias"][:vocab]
    return {key: value.contiguous() for key, value in out.items()}


def state_dict_from_modernbert(state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """ModernBERT weights (`ModernBertForMaskedLM`, or a bare `ModernBertModel` whose keys lack `model.`) as ours;
    a `ModernBertForSequenceClassification`'s head and classifier as our classifier's `pooler.*`, `classifier.*`.

    Without an MLM head in `state` the result has no `head.*` keys: the caller decides whether a fresh head
    will do. A missing trunk weight raises KeyError naming it.
    """
    if not any(key.startswith("model.") for key in state):  # a ModernBertModel's save_pretrained
        state = {f"model.{key}": value for key, value in state.items()}

    def padded(rows: Tensor) -> Tensor:
        return torch.cat([rows, rows.new_zeros(cfg.padded_vocab_size - rows.shape[0], *rows.shape[1:])])

    embedding = padded(state["model.embeddings.tok_embeddings.weight"])
    classifier = "classifier.weight" in state
    has_head = "head.dense.weight" in state and not classifier  # an MLM head (a classifier's head is its own)
    names = {ours: theirs for ours, theirs in _weight_names(cfg).items() if has_head or not ours.startswith("head.")}
    if classifier:
        names.update(_classifier_names(cfg))
    out = {ours: state[theirs] for ours, theirs in names.items()}
    for key in [key for key in out if ".ffn.up." in key]:
        out[key] = _swap_halves(out[key])
    out["bert.embeddings.tokens.weight"] = embedding
    if has_head:  # tied: save_pretrained stores the shared matrix once, as the embedding
        out["head.decoder.weight"] = embedding if cfg.tie_embeddings else padded(state["decoder.weight"])
        if cfg.decoder_bias:
            out["head.decoder.bias"] = padded(state["decoder.bias"])
    return out


def _layer_period(hf_config: Any) -> int:
    """`global_attn_every_n_layers` of a ModernBertConfig: read directly (transformers 4) or from `layer_types` (5)."""
    layer_types = getattr(hf_config, "layer_types", None)
    if not layer_types:
        return int(hf_config.global_attn_every_n_layers)
    full = [index for index, kind in enumerate(layer_types) if kind == "full_attention"]
    period = full[1] if len(full) > 1 else (len(layer_types) if full == [0] else 0)
    expected = ["full_attention" if i % max(period, 1) == 0 else "sliding_attention" for i in range(len(layer_types))]
    if period == 0 or layer_types != expected:
        raise UserError(
            f"the ModernBERT checkpoint's layer_types {layer_types} are not a global layer every n layers from layer "
            "0; composer-bert's blocks compute only that pattern"
        )
    return period


def _rotary_bases(hf_config: Any) -> tuple[float, float, str]:
    """(global theta, local theta, rope type) in either transformers' layout."""
    rope = getattr(hf_config, "rope_parameters", None)
    if rope:
        full, sliding = rope.get("full_attention", {}), rope.get("sliding_attention", {})
        kinds = {full.get("rope_type", "default"), sliding.get("rope_type", "default")}
        return full["rope_theta"], sliding["rope_theta"], "default" if kinds == {"default"} else "/".join(sorted(kinds))
    return hf_config.global_rope_theta, hf_config.local_rope_theta, "default"


def model_config_from_modernbert(hf_config: Any, base: ModelConfig | None = None) -> ModelConfig:
    """The ModelConfig of a `ModernBertConfig`; what our blocks cannot compute (another activation, rope scaling,
    biases on some layers only, another layer pattern) is one UserError line. `base` supplies the keys ModernBERT
    has no counterpart for (pad_vocab_multiple, sparse_prediction); default: ModelConfig's own."""
    biases = {name: bool(getattr(hf_config, name)) for name in BIAS_FIELDS}
    global_theta, local_theta, rope_type = _rotary_bases(hf_config)
    unsupported = {
        "hidden_activation": (hf_config.hidden_activation, "gelu"),
        "classifier_activation": (hf_config.classifier_activation, "gelu"),
        "rope_type": (rope_type, "default"),
        "mlp_dropout": (float(hf_config.mlp_dropout), 0.0),
        "attention_bias/mlp_bias/norm_bias/classifier_bias": (
            biases, dict.fromkeys(BIAS_FIELDS, biases["attention_bias"])),
    }  # fmt: skip
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise UserError(f"the ModernBERT checkpoint has {key}={value!r}; composer-bert's blocks compute only {supported!r}")
    shape = {ours: getattr(hf_config, theirs) for ours, theirs in CONFIG_FIELDS.items()}
    shape["tie_embeddings"] = bool(shape["tie_embeddings"])
    shape["pad_token_id"] = hf_config.pad_token_id if hf_config.pad_token_id is not None else 0
    return dataclasses.replace(
        base or ModelConfig(),
        **MODERNBERT_SWITCHES,
        **shape,
        qkv_bias=biases["attention_bias"],
        linear_bias=biases["attention_bias"],
        hidden_dropout=0.0,
        rope_theta=float(global_theta),
        local_rope_theta=float(local_theta),
        global_attn_every_n_layers=_layer_period(hf_config),
        classifier_head="modernbert",
        init_from=None,
    )
