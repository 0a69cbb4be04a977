"""The `transformers` config of a composer-bert model: our `ModelConfig` fields as a `PretrainedConfig`.

This file is copied into every exported directory (its `composer_bert` imports rewritten to relative
ones), so it may import only `composer_bert.models` modules, `transformers`, `torch` and the stdlib.
"""

from __future__ import annotations

import dataclasses

from transformers import PretrainedConfig

from composer_bert.models.config import ModelConfig

MODEL_FIELDS = tuple(field.name for field in dataclasses.fields(ModelConfig))


class ComposerBertConfig(PretrainedConfig):
    """Holds every `ModelConfig` field under its own name, so config.json alone rebuilds the architecture."""

    model_type = "composer_bert"
    # Standard names that `transformers` utilities read, mapped onto ours.
    attribute_map = {
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "initializer_range": "init_std",
        "layer_norm_eps": "norm_eps",
    }

    def __init__(self, **kwargs) -> None:
        defaults = ModelConfig()
        for name in MODEL_FIELDS:
            if name != "pad_token_id":  # PretrainedConfig stores that one itself
                setattr(self, name, kwargs.pop(name, getattr(defaults, name)))
        kwargs.setdefault("pad_token_id", defaults.pad_token_id)
        kwargs.setdefault("tie_word_embeddings", self.tie_embeddings)
        super().__init__(**kwargs)

    @classmethod
    def from_model_config(cls, model_config: ModelConfig, **kwargs) -> ComposerBertConfig:
        return cls(**dataclasses.asdict(model_config), **kwargs)

    def to_model_config(self) -> ModelConfig:
        return ModelConfig(**{name: getattr(self, name) for name in MODEL_FIELDS})
