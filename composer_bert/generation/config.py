"""The keys of `recipes/generate.py`, checked by the one validation pass (`schema.validate`) before torch loads."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from composer_bert.schema import bounded, choice, positive, seed_field


@dataclass
class GenerateConfig:
    """Sampling settings; `temperature: 0` is greedy decoding (top_k, top_p and seed then do not matter)."""

    checkpoint: str = MISSING  # a Composer .pt of a causal run, or a folder written by recipes/export_hf.py
    prompt: str = ""  # empty: start a new document (from the end-of-text token)
    max_new_tokens: int = positive(50, "a positive number of tokens")
    temperature: float = bounded(0.8, "a temperature >= 0 (0 is greedy)", ge=0)
    top_p: float = bounded(0.95, "a probability in (0, 1] (1 keeps every token)", gt=0, le=1)
    top_k: int = bounded(0, "0 (off) or a positive number of tokens", ge=0)
    seed: int = seed_field(0)
    num_samples: int = positive(1, "a positive number of samples")
    kv_cache: bool = True  # false recomputes the whole sequence for every token (same tokens, slower)
    device: str = choice("auto", ["auto", "cpu", "cuda"])  # auto: the GPU when there is one
