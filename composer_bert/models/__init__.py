"""The BERT encoder, its heads, the causal LM on the same trunk, and their Composer wrappers.

Names resolve on first use, so importing `composer_bert.models.config` (every config load does) does not
pull in torch, Composer and transformers.
"""

from __future__ import annotations

from composer_bert.lazy import lazy_attributes

_HOME = {
    "ModelConfig": "config",
    "BertEncoder": "bert",
    "BertForMaskedLM": "bert",
    "BertForSequenceClassification": "bert",
    "CausalLM": "causal",
    "CausalLMForSequenceClassification": "causal",
    "ComposerCausalLM": "composer_model",
    "ComposerMLM": "composer_model",
    "ComposerClassifier": "composer_model",
    "build_composer_model": "composer_model",
    "mlm_flops_per_batch": "flops",
    "classifier_flops_per_batch": "flops",
    "causal_flops_per_batch": "flops",
    "is_plain_bert": "hf_bert",
    "model_config_from_hf": "hf_bert",
    "hf_config_from_model_config": "hf_bert",
    "state_dict_from_hf_bert": "hf_bert",
    "state_dict_to_hf_bert": "hf_bert",
}
__all__ = list(_HOME)

__getattr__ = lazy_attributes(__name__, _HOME)
