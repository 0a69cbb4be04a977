"""Helpers the model tests share: a tiny model config and right-padded random token ids."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from composer_bert.models.config import ModelConfig

VOCAB = 100
TINY = dict(vocab_size=VOCAB, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_position_embeddings=32)


def tiny_config(**overrides) -> ModelConfig:
    """Two layers of 64 over a 100-token vocabulary, 32 positions; `overrides` on top."""
    return ModelConfig(**{**TINY, **overrides})


def padded_ids(
    generator: torch.Generator, lengths: Sequence[int], width: int, vocab: int = VOCAB
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask): one row per length of random ids from 1 up, right-padded with 0 to `width`."""
    input_ids = torch.randint(1, vocab, (len(lengths), width), generator=generator)
    attention_mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return input_ids * attention_mask, attention_mask


def randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb every weight, biases and norms included, so a misplaced one cannot hide behind zeros or ones."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()
