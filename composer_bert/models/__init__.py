"""The BERT encoder, its heads, and their Composer wrappers.

Names resolve on first use, so importing `composer_bert.models.config` (every config load does) does not
pull in torch, Composer and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "ModelConfig": "config",
    "BertEncoder": "bert",
    "BertForMaskedLM": "bert",
    "BertForSequenceClassification": "bert",
    "ComposerMLM": "composer_model",
    "ComposerClassifier": "composer_model",
    "build_composer_model": "composer_model",
    "mlm_flops_per_batch": "flops",
    "classifier_flops_per_batch": "flops",
    "is_plain_bert": "hf_bert",
    "model_config_from_hf": "hf_bert",
    "hf_config_from_model_config": "hf_bert",
    "state_dict_from_hf_bert": "hf_bert",
    "state_dict_to_hf_bert": "hf_bert",
}
__all__ = list(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'composer_bert.models' has no attribute '{name}'")
    return getattr(importlib.import_module(f"composer_bert.models.{_HOME[name]}"), name)
