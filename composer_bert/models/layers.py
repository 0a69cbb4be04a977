"""The pieces of a transformer block: norms, positions, attention, feed-forward, and the block itself.

Hidden states are always [B, L, D]. Padding (finetuning batches) is handled by attention alone, as a key
mask in `AttentionInputs.bias`: every other layer works per token, so padded positions never reach a real
one. Nothing here reads a tensor value on the host, so a block compiles into one graph (see bert.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer_bert.models.config import ModelConfig


def build_norm(cfg: ModelConfig, size: int) -> nn.Module:
    if cfg.norm_type == "rmsnorm":
        return nn.RMSNorm(size, eps=cfg.norm_eps)
    return nn.LayerNorm(size, eps=cfg.norm_eps, bias=cfg.linear_bias)


class ScaledSinusoidalPositions(nn.Module):
    """Cramming's positions: the fixed sinusoid table times one learnable scalar (initially 1/sqrt(D))."""

    def __init__(self, hidden_size: int, max_positions: int):
        super().__init__()
        position = torch.arange(max_positions, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, hidden_size, 2, dtype=torch.float32) * (-math.log(10000.0) / hidden_size))
        table = torch.zeros(max_positions, hidden_size)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("table", table, persistent=False)
        self.scale = nn.Parameter(torch.tensor(hidden_size**-0.5))

    def forward(self, position_ids: Tensor) -> Tensor:
        return self.scale * self.table[position_ids]


class Rotary(nn.Module):
    """Rotary position angles (GPT-NeoX half rotation), computed once per batch and shared by all layers."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inverse_frequency = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inverse_frequency", inverse_frequency, persistent=False)

    def forward(self, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin of shape [*position_ids.shape, 1, head_dim]: broadcast over the heads of q and k."""
        angles = position_ids[..., None].float() * self.inverse_frequency
        angles = torch.cat((angles, angles), dim=-1)[..., None, :]
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-second, first), dim=-1) * sin).type_as(x)


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi's geometric head slopes; for a non-power-of-two count, the extra heads take every other slope of 2x."""
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    slopes += [2 ** (-4 * (2 * i + 1) / closest) for i in range(num_heads - closest)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, seq_len: int, causal: bool = False) -> Tensor:
    """[1, H, L, L] scores bias -slope * |i - j|: symmetric, as MosaicBERT's bidirectional ALiBi.

    causal: ALiBi's original (decoder) form, -slope * (i - j) for keys j <= i and -inf for later keys, so the
    bias is also the causal mask.
    """
    position = torch.arange(seq_len, device=slopes.device)
    offset = position[None, :] - position[:, None]  # key - query
    bias = (-slopes[:, None, None] * offset.abs())[None]
    return bias.masked_fill(offset > 0, float("-inf")) if causal else bias


@dataclass
class AttentionInputs:
    """What every layer's attention needs to know about the batch, built once per forward by the encoder."""

    # SDPA's attn_mask: bool [B, 1, 1 or L, L] key padding (True = attend; [B, 1, L, L] when causal, the
    # causal mask folded in), float ALiBi scores [B or 1, H, L, L] with -inf at masked keys, or None (full
    # rows, no ALiBi): then SDPA may pick its flash kernel
    bias: Tensor | None
    rotary: tuple[Tensor, Tensor] | None  # cos, sin per position, for rotary positions
    # causal self-attention: query i sees keys j <= i. Without a bias this is SDPA's is_causal (the flash and
    # efficient kernels skip the masked half); with one, the bias already holds the causal mask.
    causal: bool = False


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.linear_bias)
        self.dropout = cfg.attention_dropout
        self.q_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: Tensor, inputs: AttentionInputs, cache: LayerCache | None = None) -> Tensor:
        q, k, v = self.project(x, inputs)
        if cache is not None:  # generation: attend over every cached position, this forward's included
            k, v = cache.extend(k, v)
        return self.attend(q, k, v, inputs)

    def project(self, x: Tensor, inputs: AttentionInputs) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, H, L, d] of hidden states [B, L, D], rotated at their positions (rotary).

        Split from `attend` so that a decoder's key/value cache can join earlier positions' k and v in between.
        """
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)  # each [..., H, d]
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if inputs.rotary is not None:
            q, k = apply_rotary(q, *inputs.rotary), apply_rotary(k, *inputs.rotary)
        return q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, inputs: AttentionInputs) -> Tensor:
        """Attention of queries [B, H, Lq, d] over keys and values [B, H, Lk, d], projected out to [B, Lq, D]."""
        dropout = self.dropout if self.training else 0.0
        is_causal = inputs.causal and inputs.bias is None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=inputs.bias, dropout_p=dropout, is_causal=is_causal)
        return self.out(y.transpose(-3, -2).flatten(-2))


class FeedForward(nn.Module):
    """GELU MLP, or a gated one (GEGLU, SwiGLU) whose input projection is twice intermediate_size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.ffn_type != "gelu"
        self.activation = F.silu if cfg.ffn_type == "swiglu" else F.gelu
        width = 2 * cfg.intermediate_size if self.gated else cfg.intermediate_size
        self.up = nn.Linear(cfg.hidden_size, width, bias=cfg.linear_bias)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.linear_bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(x)
        if self.gated:
            value, gate = h.chunk(2, dim=-1)
            return self.down(value * self.activation(gate))
        return self.down(self.activation(h))


class Block(nn.Module):
    """Attention then feed-forward, each a residual branch; norms before them (pre) or after the sum (post).

    Layer 0 of a pre-norm model with `first_attn_norm: false` (ModernBERT) reads the embedding norm's output
    without a norm of its own.
    """

    def __init__(self, cfg: ModelConfig, index: int = 0):
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        skip_norm = index == 0 and self.pre_norm and not cfg.first_attn_norm
        self.attn_norm = nn.Identity() if skip_norm else build_norm(cfg, cfg.hidden_size)
        self.attn = Attention(cfg)
        self.ffn_norm = build_norm(cfg, cfg.hidden_size)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x: Tensor, inputs: AttentionInputs, cache: LayerCache | None = None) -> Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.attn_norm(x), inputs, cache))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attn(x, inputs, cache)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


# ---------------------------------------------------------------------------------------------- KV cache


class KVCache:
    """The keys and values a causal model computed for the positions it has seen, per layer, preallocated.

    Generation (composer_bert/generation) runs the prompt once, then each new token alone: every layer's
    attention writes that forward's k and v at `length` and attends over positions 0..length+L-1, and
    `BertEncoder.forward` advances `length` and places the new tokens at those positions (rotary, learned and
    sinusoidal positions; ALiBi's distances and the causal mask).
    """

    def __init__(
        self, cfg: ModelConfig, batch_size: int, max_length: int, dtype: torch.dtype = torch.float32, device=None
    ) -> None:
        shape = (batch_size, cfg.num_heads, max_length, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.length = 0  # positions cached so far: the next token's position
        self.max_length = max_length
        self.layers = [LayerCache(self, index) for index in range(cfg.num_layers)]

    def reserve(self, count: int) -> int:
        """Check that `count` more positions fit; return the first of them."""
        if self.length + count > self.max_length:
            raise ValueError(f"the KV cache holds {self.max_length} positions; {self.length + count} were asked for")
        return self.length


@dataclass
class LayerCache:
    """One layer's view of a `KVCache`."""

    cache: KVCache
    index: int

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write this forward's k, v [B, H, L, d] after the cached ones; return all of them [B, H, length + L, d]."""
        start = self.cache.length
        end = start + k.shape[-2]
        keys, values = self.cache.keys[self.index], self.cache.values[self.index]
        keys[:, :, start:end], values[:, :, start:end] = k, v
        return keys[:, :, :end], values[:, :, :end]
