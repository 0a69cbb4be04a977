"""Matmul FLOPs of one training step, for Composer's SpeedMonitor to turn into MFU.

Counts what the model computes: 2 FLOPs per multiply-add of every Linear and of attention's QK^T and
AV, with the backward pass twice the forward. Embedding lookups, norms and activations are free.
Everything is counted from tensor shapes, never from tensor values (a value read would synchronise the
GPU every batch): the model computes every position of a padded batch (padding is masked, not removed),
and a sparse MLM head computes every slot of `masked_positions`, empty ones included. The decoder is
counted at the padded vocabulary it multiplies.

Causal attention is counted as the full L x L score matrix, as PyTorch's FLOP counter and nanoGPT's
`estimate_mfu` (and PaLM's MFU formula) count it: causal kernels skip the masked half, so MFU of a causal
model counts up to L^2 * d per layer that no kernel computes (a few percent of the total at seq 1024 and
width 768). Full matrices keep causal and MLM figures comparable and match the published MFU numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from composer_bert.batch import MASKED_POSITIONS
from composer_bert.models.config import ModelConfig


def encoder_forward_flops(cfg: ModelConfig, batch_size: int, seq_len: int) -> int:
    tokens, attended_pairs = batch_size * seq_len, batch_size * seq_len**2
    d, i = cfg.hidden_size, cfg.intermediate_size
    ffn_up = 2 * i if cfg.ffn_type in ("geglu", "swiglu") else i
    linear = 2 * tokens * (d * 3 * d + d * d + d * ffn_up + i * d)  # qkv, out, ffn up, ffn down
    attention = 2 * 2 * attended_pairs * d  # QK^T and AV over all heads
    return cfg.num_layers * (linear + attention)


def mlm_flops_per_batch(cfg: ModelConfig, batch: Mapping[str, Tensor]) -> int:
    """Forward + backward FLOPs of `ComposerMLM` on a batch with input_ids, labels and masked_positions."""
    input_ids = batch["input_ids"]
    positions = batch.get(MASKED_POSITIONS)
    if cfg.sparse_prediction and positions is not None:
        head_rows = positions.numel()
    else:  # dense, or sparse in slots as wide as the row (ComposerMLM without masked_positions)
        head_rows = input_ids.numel()
    d = cfg.hidden_size
    head = 2 * head_rows * (d * d * cfg.head_transform + d * cfg.padded_vocab_size)
    return 3 * (encoder_forward_flops(cfg, *input_ids.shape) + head)


def classifier_flops_per_batch(
    cfg: ModelConfig, num_labels: int, batch: Mapping[str, Tensor], pooler: bool = True
) -> int:
    """Forward + backward FLOPs of a sequence classifier: trunk, the [CLS] pooler (an encoder's; a causal
    classifier has none) and the linear head."""
    input_ids = batch["input_ids"]
    d = cfg.hidden_size
    head = 2 * input_ids.shape[0] * (d * d * pooler + d * num_labels)
    return 3 * (encoder_forward_flops(cfg, *input_ids.shape) + head)


def causal_flops_per_batch(cfg: ModelConfig, batch: Mapping[str, Tensor]) -> int:
    """Forward + backward FLOPs of `ComposerCausalLM`: the trunk (full score matrices) and the LM head at every position."""
    input_ids = batch["input_ids"]
    d = cfg.hidden_size
    head = 2 * input_ids.numel() * (d * d * cfg.head_transform + d * cfg.padded_vocab_size)
    return 3 * (encoder_forward_flops(cfg, *input_ids.shape) + head)
