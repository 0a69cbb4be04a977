"""Text generation from causal LMs: `config.py` (the `recipes/generate.py` keys), `sampling.py` (the decoding
loop with its KV cache, the top-k/top-p filter and console streaming).

Names resolve on first use, so loading the config does not import torch."""

from __future__ import annotations

from composer_bert.lazy import lazy_attributes

_HOME = {
    "GenerateConfig": "config",
    "Sampler": "sampling",
    "generate_tokens": "sampling",
    "load_causal_lm": "sampling",
    "run_generate": "sampling",
}
__all__ = list(_HOME)

__getattr__ = lazy_attributes(__name__, _HOME)
