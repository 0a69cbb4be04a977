"""The pieces of a transformer block: norms, positions, attention, feed-forward, and the block itself.

Hidden states are either padded [B, L, D] or packed [total_tokens, D] (see padding.py); every layer
except attention is indifferent to which, and attention reads the layout from `AttentionInputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from composer_bert.models.config import ModelConfig
from composer_bert.models.padding import Unpadded, repad, unpad

try:  # optional: the varlen kernel attends over packed tokens without re-padding
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


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


def alibi_bias(slopes: Tensor, seq_len: int) -> Tensor:
    """[1, H, L, L] scores bias -slope * |i - j|: symmetric, as MosaicBERT's bidirectional ALiBi."""
    position = torch.arange(seq_len, device=slopes.device)
    distance = (position[None, :] - position[:, None]).abs()
    return (-slopes[:, None, None] * distance)[None]


@dataclass
class AttentionInputs:
    """What every layer's attention needs to know about the batch, built once per forward by the encoder."""

    bias: Tensor | None  # added to SDPA scores (ALiBi, key padding) or None: then SDPA may use flash kernels
    rotary: tuple[Tensor, Tensor] | None  # cos, sin per token, for rotary positions
    layout: Unpadded | None  # set when hidden states are packed [total_tokens, D]
    alibi_slopes: Tensor | None  # [H] for flash-attn's varlen kernel, which applies ALiBi itself


class Attention(nn.Module):
    """Multi-head self-attention with one fused QKV projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.linear_bias)
        self.dropout = cfg.attention_dropout

    def forward(self, x: Tensor, inputs: AttentionInputs) -> Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)  # each [..., H, d]
        if inputs.rotary is not None:
            q, k = apply_rotary(q, *inputs.rotary), apply_rotary(k, *inputs.rotary)
        dropout = self.dropout if self.training else 0.0
        layout = inputs.layout
        if layout is not None and _flash_varlen_applies(q):
            seqlens, longest = layout.cu_seqlens, layout.max_seqlen
            y = flash_attn_varlen_func(
                q, k, v, seqlens, seqlens, longest, longest, dropout_p=dropout, alibi_slopes=inputs.alibi_slopes
            )
        else:
            if layout is not None:
                q, k, v = repad(q, layout), repad(k, layout), repad(v, layout)
            q, k, v = q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)  # [B, H, L, d]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=inputs.bias, dropout_p=dropout).transpose(-3, -2)
            if layout is not None:
                y = unpad(y, layout)
        return self.out(y.flatten(-2))


def _flash_varlen_applies(q: Tensor) -> bool:
    return flash_attn_varlen_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)


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
    """Attention then feed-forward, each a residual branch; norms before them (pre) or after the sum (post)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        self.attn_norm = build_norm(cfg, cfg.hidden_size)
        self.attn = Attention(cfg)
        self.ffn_norm = build_norm(cfg, cfg.hidden_size)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x: Tensor, inputs: AttentionInputs) -> Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.attn_norm(x), inputs))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attn(x, inputs)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))
