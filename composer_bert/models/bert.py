"""The BERT encoder and its two heads: masked language modelling and sequence classification.

Everything here compiles into one graph (`torch.compile(..., fullgraph=True)`) and never reads a tensor
value on the host, so a GPU step runs without a host-device synchronisation:

- Padding is masked, not removed. Packing the real tokens of a padded batch (what flash-attn's varlen
  kernels read) needs their count on the host, i.e. one synchronisation per forward and a tensor shape
  that changes every batch, which breaks the graph and recompiles it. Pretraining rows are always full
  and come without a mask, so nothing is lost there; padded finetuning batches attend through SDPA with a
  key-padding mask and pay for their padding in the per-token layers.
- Sparse prediction runs the MLM head on a fixed number of slots per row, `masked_positions` [B, K]
  (see data/masking.py for K), gathered from the hidden states: the head's shape is the same in every
  batch, whatever the number of masked tokens. A slot of -1 holds no prediction and its target is ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from composer_bert.batch import IGNORE_INDEX
from composer_bert.errors import UserError
from composer_bert.models.config import ModelConfig
from composer_bert.models.layers import (
    AttentionInputs,
    Block,
    KVCache,
    Rotary,
    ScaledSinusoidalPositions,
    alibi_bias,
    alibi_slopes,
    build_norm,
)
from composer_bert.objectives import OBJECTIVES, objective
from composer_bert.schema import validate


class Embeddings(nn.Module):
    """Token + (learned or scaled sinusoidal) position + token type embeddings, then an optional norm."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tokens = nn.Embedding(cfg.padded_vocab_size, cfg.hidden_size)
        self.positions: nn.Module | None = None
        if cfg.position_embedding == "learned":
            self.positions = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        elif cfg.position_embedding == "sinusoidal":
            self.positions = ScaledSinusoidalPositions(cfg.hidden_size, cfg.max_position_embeddings)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size > 0 else None
        self.norm = build_norm(cfg, cfg.hidden_size) if cfg.embedding_norm else nn.Identity()
        self.dropout = nn.Dropout(cfg.embedding_dropout)

    def forward(self, input_ids: Tensor, position_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        x = self.tokens(input_ids)
        if self.positions is not None:
            x = x + self.positions(position_ids)
        if self.token_types is not None:
            x = x + (self.token_types.weight[0] if token_type_ids is None else self.token_types(token_type_ids))
        return self.dropout(self.norm(x))


class BertEncoder(nn.Module):
    """Embeddings and blocks; padded batches (attention_mask given) attend only to their real tokens.

    The trunk of both objectives: with `objective: causal` every position attends only to itself and earlier
    ones (models/causal.py puts the LM head on it).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise UserError("model.vocab_size is None: the trainer fills it from the shard manifest before building")
        validate(cfg, "model.")  # configs from checkpoints and exports did not pass through load_config
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg, index) for index in range(cfg.num_layers))
        self.final_norm = build_norm(cfg, cfg.hidden_size) if cfg.final_norm else nn.Identity()
        rotary = cfg.position_embedding == "rotary"
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta) if rotary else None
        self.local_rotary = Rotary(cfg.head_dim, cfg.local_rope_theta) if rotary and cfg.has_local_layers else None
        # per layer: attends globally (True) or within local_attention / 2 positions either side
        self.global_layers = [cfg.is_global_layer(index) for index in range(cfg.num_layers)]
        self.half_window = cfg.local_attention // 2
        slopes = alibi_slopes(cfg.num_heads) if cfg.position_embedding == "alibi" else None
        self.register_buffer("alibi_slopes", slopes, persistent=False)
        self.causal = objective(cfg.objective).causal_attention
        self.activation_checkpointing = cfg.activation_checkpointing

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """[B, L] ids -> [B, L, D] hidden states; zeros where attention_mask is 0 (padding).

        Without a mask every position is a real token (pretraining rows are full); that is also the fast
        path: no mask lets SDPA pick its flash kernel. `position_ids` ([L] or [B, L], default 0..L-1) place
        the tokens for learned, sinusoidal and rotary positions; ALiBi and the causal mask go by index.
        A `cache` (causal generation) places the tokens after the cached ones: see `_forward_cached`.
        """
        if cache is not None:
            if attention_mask is not None or position_ids is not None:
                raise ValueError("a KV cache takes full rows at the positions after the cached ones: no mask, no position_ids")
            return self._forward_cached(input_ids, cache)
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=input_ids.device)  # [L]: broadcasts over the batch
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        inputs = self._attention_inputs(seq_len, position_ids, attention_mask)
        local = None if all(self.global_layers) else self._local_inputs(inputs, seq_len, position_ids)
        for layer, is_global in zip(self.layers, self.global_layers, strict=True):
            inputs_here = inputs if is_global else local
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, inputs_here, use_reentrant=False)
            else:
                x = layer(x, inputs_here)
        x = self.final_norm(x)
        return x if attention_mask is None else x.masked_fill(attention_mask[..., None] == 0, 0.0)

    # ------------------------------------------------------------------------------------------ KV cache

    def _forward_cached(self, input_ids: Tensor, cache: KVCache) -> Tensor:
        """Full rows at positions cache.length.. (the tokens after the cached ones), each attending to every
        earlier position and itself; their keys and values join the cache."""
        seq_len = input_ids.shape[1]
        start = cache.reserve(seq_len)
        position_ids = torch.arange(start, start + seq_len, device=input_ids.device)
        x = self.embeddings(input_ids, position_ids, None)
        key = torch.arange(start + seq_len, device=input_ids.device)
        offset = key[None, :] - position_ids[:, None]  # [L, start + L]: key - query; > 0 is a later key
        bias = None  # one new token attends to every cached position: no mask
        if self.alibi_slopes is not None:
            bias = (-self.alibi_slopes[:, None, None] * offset.abs())[None].masked_fill(offset > 0, float("-inf"))
        elif seq_len > 1:
            bias = (offset <= 0)[None, None]
        rotary = None if self.rotary is None else self.rotary(position_ids)
        inputs = AttentionInputs(bias, rotary, causal=False)  # the bias holds the mask; SDPA's is_causal would not offset
        for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
            x = layer(x, inputs, layer_cache)
        cache.length += seq_len
        return self.final_norm(x)

    def _local_inputs(self, global_inputs: AttentionInputs, seq_len: int, position_ids: Tensor) -> AttentionInputs:
        """The local layers' inputs: the global ones with keys beyond half the window masked, and their own rotary base.

        A static [L, L] band mask through SDPA: portable, compiled without graph breaks, no host read (docs/models.md
        says why this path). Each query also keeps itself, so a padding query far from any real token (its other
        keys all masked) never makes SDPA return NaN that would reach real positions through the values.
        """
        position = torch.arange(seq_len, device=position_ids.device)
        offset = position[None, :] - position[:, None]  # key - query
        band = offset.abs() <= self.half_window  # [L, L]
        bias = band[None, None] if global_inputs.bias is None else (global_inputs.bias & band) | (offset == 0)
        rotary = global_inputs.rotary if self.local_rotary is None else self.local_rotary(position_ids)
        return AttentionInputs(bias, rotary, causal=global_inputs.causal)

    def _attention_inputs(self, seq_len: int, position_ids: Tensor, attention_mask: Tensor | None) -> AttentionInputs:
        bias = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L] keys
        if self.causal and bias is not None:  # padded causal batch: the causal mask joins the key mask
            position = torch.arange(seq_len, device=bias.device)
            bias = bias & (position[None, :] <= position[:, None])  # [B, 1, L, L]
        if self.alibi_slopes is not None:
            alibi = alibi_bias(self.alibi_slopes, seq_len, causal=self.causal)
            bias = alibi if bias is None else alibi.masked_fill(~bias, float("-inf"))
        rotary = None if self.rotary is None else self.rotary(position_ids)
        return AttentionInputs(bias, rotary, causal=self.causal)


class MLMHead(nn.Module):
    """Optional BERT transform (dense, GELU, norm), then the decoder to vocabulary logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.vocab_size = cfg.vocab_size
        self.transform = nn.Identity()
        if cfg.head_transform:
            dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.linear_bias)
            norm = build_norm(cfg, cfg.hidden_size)
            self.transform = nn.Sequential(OrderedDict(dense=dense, activation=nn.GELU(), norm=norm))
        self.decoder = nn.Linear(cfg.hidden_size, cfg.padded_vocab_size, bias=cfg.decoder_bias)

    def forward(self, hidden: Tensor) -> Tensor:
        # The matmul runs over the padded (aligned) vocabulary; padded ids are sliced off the logits.
        return self.decoder(self.transform(hidden))[..., : self.vocab_size]


class LanguageModel(nn.Module):
    """The trunk and LM head both objectives' models share (module names `bert.*`, `head.*`: one checkpoint key
    layout), the head tied to the token embeddings by `tie_embeddings`; objectives.py's table names the subclass
    each objective trains."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        owners = [o.name for o in OBJECTIVES.values() if o.bare_model.endswith(f":{type(self).__name__}")]
        if cfg.objective not in owners:
            raise UserError(
                f"{type(self).__name__} needs a model with objective '{' or '.join(owners)}', but this one is '{cfg.objective}'"
            )
        self.config = cfg
        self.bert = BertEncoder(cfg)
        self.head = MLMHead(cfg)
        init_weights(self, cfg.init_std)
        if cfg.tie_embeddings:
            self.head.decoder.weight = self.bert.embeddings.tokens.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are one parameter, counted once


class BertForMaskedLM(LanguageModel):
    """Encoder + MLM head. With sparse_prediction and masked_positions given, logits only at those positions."""

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> Tensor:
        """Logits [B, L, vocab_size], or [B, K, vocab_size] at `masked_positions` [B, K] when sparse.

        Slots of -1 in `masked_positions` get the logits of position 0; their targets are IGNORE_INDEX.
        """
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        if self.config.sparse_prediction and masked_positions is not None:
            hidden = gather_positions(hidden, masked_positions)
        return self.head(hidden)


def gather_positions(hidden: Tensor, positions: Tensor) -> Tensor:
    """[B, L, D] hidden states at [B, K] positions -> [B, K, D]; a slot of -1 reads position 0."""
    index = positions.clamp(min=0)[..., None].expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, index)


def masked_positions(labels: Tensor, width: int) -> Tensor:
    """[B, width]: each row's masked positions (labels != IGNORE_INDEX) in ascending order, then -1.

    Computed on the tensor's device with a static shape (no host read). A row with more than `width`
    masked positions keeps its first `width`: pass a width no row exceeds (the sequence length always works).
    """
    seq_len = labels.shape[1]
    position = torch.arange(seq_len, device=labels.device)
    first = torch.where(labels != IGNORE_INDEX, position, seq_len).sort(dim=1).values[:, :width]
    if width > seq_len:
        first = torch.nn.functional.pad(first, (0, width - seq_len), value=seq_len)
    return torch.where(first < seq_len, first, -1)


def masked_targets(labels: Tensor, positions: Tensor) -> Tensor:
    """The labels at [B, K] positions, IGNORE_INDEX at empty (-1) slots: the targets of sparse logits."""
    return labels.gather(1, positions.clamp(min=0)).masked_fill(positions < 0, IGNORE_INDEX)


class BertForSequenceClassification(nn.Module):
    """Encoder + a head on [CLS] (`classifier_head`: BERT's pooler, dense + tanh, or ModernBERT's dense + GELU +
    norm) + dropout + linear; num_labels == 1 is regression."""

    def __init__(self, cfg: ModelConfig, num_labels: int):
        super().__init__()
        if objective(cfg.objective).causal_attention:  # [CLS] summarizes the row only when it attends forward
            encoders = " or ".join(o.name for o in OBJECTIVES.values() if not o.causal_attention)
            raise UserError(
                f"BertForSequenceClassification needs a model with objective '{encoders}', but this one is '{cfg.objective}'"
            )
        self.config = cfg
        self.bert = BertEncoder(cfg)
        self.pooler = _classifier_head(cfg)
        self.tanh = cfg.classifier_head == "pooler"  # BERT's pooler ends in tanh (kept apart: its keys stay pooler.*)
        self.dropout = nn.Dropout(cfg.classifier_dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        init_weights(self, cfg.init_std)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Logits [B, num_labels]."""
        cls_state = self.bert(input_ids, attention_mask, token_type_ids)[:, 0]
        pooled = self.pooler(cls_state)
        return self.classifier(self.dropout(torch.tanh(pooled) if self.tanh else pooled))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _classifier_head(cfg: ModelConfig) -> nn.Module:
    """What a classifier reads of [CLS]: BERT's pooler dense (with bias; tanh follows) or ModernBERT's head."""
    if cfg.classifier_head == "modernbert":
        dense = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.linear_bias)
        return nn.Sequential(OrderedDict(dense=dense, activation=nn.GELU(), norm=build_norm(cfg, cfg.hidden_size)))
    return nn.Linear(cfg.hidden_size, cfg.hidden_size)


def init_weights(model: nn.Module, std: float) -> None:
    """BERT's init of every module of `model` (see `init_module`)."""
    for module in model.modules():
        init_module(module, std)


def init_module(module: nn.Module, std: float, init: Any = nn.init) -> None:
    """BERT's init of one module's own parameters: normal(0, std) linears and embeddings, zero biases, unit norm
    weights. `init` supplies normal_/zeros_/ones_ (transformers 5 passes its own, which skip loaded tensors).

    Output projections are not rescaled by depth (BERT and Cramming do not); the scaled sinusoid keeps its own init.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        init.zeros_(module.bias)
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            init.zeros_(module.bias)
