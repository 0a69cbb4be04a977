"""Matmul FLOPs of one training step, for Composer's SpeedMonitor to turn into MFU.

Counts what the model computes: 2 FLOPs per multiply-add of every Linear and of attention's QK^T and
AV, with the backward pass twice the forward. Embedding lookups, norms and activations are free.
Padding costs nothing (packed layers; attention counted per sequence as its length squared), and a
sparse MLM head runs only on masked tokens. The decoder is counted at the padded vocabulary it multiplies.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from composer_bert.models.bert import IGNORE_INDEX
from composer_bert.models.config import ModelConfig


def encoder_forward_flops(cfg: ModelConfig, input_ids: Tensor, attention_mask: Tensor | None = None) -> int:
    batch_size, seq_len = input_ids.shape
    if attention_mask is None:
        tokens, attended_pairs = batch_size * seq_len, batch_size * seq_len**2
    else:
        lengths = attention_mask.sum(dim=1, dtype=torch.int64)
        tokens, attended_pairs = int(lengths.sum()), int((lengths**2).sum())
    d, i = cfg.hidden_size, cfg.intermediate_size
    ffn_up = 2 * i if cfg.ffn_type in ("geglu", "swiglu") else i
    linear = 2 * tokens * (d * 3 * d + d * d + d * ffn_up + i * d)  # qkv, out, ffn up, ffn down
    attention = 2 * 2 * attended_pairs * d  # QK^T and AV over all heads
    return cfg.num_layers * (linear + attention)


def mlm_flops_per_batch(cfg: ModelConfig, batch: Mapping[str, Tensor]) -> int:
    """Forward + backward FLOPs of `BertForMaskedLM` on a batch with input_ids, attention_mask, labels."""
    input_ids, labels = batch["input_ids"], batch.get("labels")
    if cfg.sparse_prediction and labels is not None:
        head_rows = int((labels != IGNORE_INDEX).sum())
    else:
        head_rows = input_ids.numel()  # a dense head runs on every position, padding included
    d = cfg.hidden_size
    head = 2 * head_rows * (d * d * cfg.head_transform + d * cfg.padded_vocab_size)
    return 3 * (encoder_forward_flops(cfg, input_ids, batch.get("attention_mask")) + head)


def classifier_flops_per_batch(cfg: ModelConfig, num_labels: int, batch: Mapping[str, Tensor]) -> int:
    """Forward + backward FLOPs of `BertForSequenceClassification`: encoder, pooler and classifier."""
    input_ids = batch["input_ids"]
    d = cfg.hidden_size
    head = 2 * input_ids.shape[0] * (d * d + d * num_labels)
    return 3 * (encoder_forward_flops(cfg, input_ids, batch.get("attention_mask")) + head)
