"""`transformers` models that wrap our own modules, so an export computes exactly what we trained.

Each class holds our `nn.Module` under `.model` (weights are `"model." + our key`) and only adapts the
calling convention: full-sequence logits, a loss from `labels`, `ModelOutput` return values. This file
is copied into every exported directory with its `composer_bert` imports rewritten to relative ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput, SequenceClassifierOutput

from composer_bert.hf.configuration_composer_bert import ComposerBertConfig
from composer_bert.models.bert import BertForMaskedLM, BertForSequenceClassification
from composer_bert.models.layers import ScaledSinusoidalPositions


class ComposerBertPreTrainedModel(PreTrainedModel):
    """Weight init for keys a checkpoint lacks (e.g. a classifier head loaded from an MLM export)."""

    config_class = ComposerBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Our init (bert.init_weights) applied to one module's own parameters, never its children's."""
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            module.weight.data.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
        if isinstance(module, ScaledSinusoidalPositions):
            module.scale.data.fill_(module.table.shape[-1] ** -0.5)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.bert.embeddings.tokens


class ComposerBertForMaskedLM(ComposerBertPreTrainedModel):
    """Our `BertForMaskedLM`; logits cover every position (never sparse), vocabulary padding sliced off."""

    _tied_weights_keys = ["model.head.decoder.weight"]

    def __init__(self, config: ComposerBertConfig) -> None:
        super().__init__(config)
        self.model = BertForMaskedLM(config.to_model_config())
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.head.decoder

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput | tuple[Tensor, ...]:
        logits = self.model(input_ids, attention_mask, token_type_ids)  # no labels: dense [B, L, vocab_size]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        if return_dict is False or (return_dict is None and not self.config.use_return_dict):
            return (logits,) if loss is None else (loss, logits)
        return MaskedLMOutput(loss=loss, logits=logits)


class ComposerBertForSequenceClassification(ComposerBertPreTrainedModel):
    """Our `BertForSequenceClassification`; the loss follows `config.problem_type` as in `transformers`."""

    def __init__(self, config: ComposerBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = BertForSequenceClassification(config.to_model_config(), config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple[Tensor, ...]:
        logits = self.model(input_ids, attention_mask, token_type_ids)
        loss = None if labels is None else self._loss(logits, labels)
        if return_dict is False or (return_dict is None and not self.config.use_return_dict):
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        problem_type = self.config.problem_type
        if problem_type is None:
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
        if problem_type == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits, labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
