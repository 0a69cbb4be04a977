"""Unpadding: a padded batch's real tokens packed into one [total_tokens, ...] tensor and back.

Finetuning batches are padded to the longest sequence; packing the real tokens lets every linear
layer skip the padding, and the packed layout is what flash-attn's varlen kernels read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Unpadded:
    """Where the real tokens of a padded [batch_size, seq_len] batch went when packed."""

    indices: Tensor  # [total_tokens]: each real token's position in the flattened [batch_size * seq_len] batch
    cu_seqlens: Tensor  # [batch_size + 1] int32 cumulative sequence lengths (flash-attn's varlen format)
    max_seqlen: int
    batch_size: int
    seq_len: int


def unpadded_layout(attention_mask: Tensor) -> Unpadded:
    """The packing of `attention_mask` [B, L] (1 = real token); syncs with the device once for max_seqlen."""
    lengths = attention_mask.sum(dim=1, dtype=torch.int32)
    cu_seqlens = torch.nn.functional.pad(torch.cumsum(lengths, dim=0, dtype=torch.int32), (1, 0))
    indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
    batch_size, seq_len = attention_mask.shape
    return Unpadded(indices, cu_seqlens, int(lengths.max()), batch_size, seq_len)


def unpad(padded: Tensor, layout: Unpadded) -> Tensor:
    """[B, L, ...] -> [total_tokens, ...]."""
    return padded.flatten(0, 1)[layout.indices]


def repad(packed: Tensor, layout: Unpadded) -> Tensor:
    """[total_tokens, ...] -> [B, L, ...], zeros at padding."""
    flat = packed.new_zeros(layout.batch_size * layout.seq_len, *packed.shape[1:])
    flat = flat.index_put((layout.indices,), packed)
    return flat.unflatten(0, (layout.batch_size, layout.seq_len))
