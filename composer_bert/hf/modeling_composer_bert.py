"""`transformers` models that wrap our own modules, so an export computes exactly what we trained.

Each class holds our `nn.Module` under `.model` (weights are `"model." + our key`) and only adapts the
calling convention: full-sequence logits, a loss from `labels`, `ModelOutput` return values. This file
is copied into every exported directory with its `composer_bert` imports rewritten to relative ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput, SequenceClassifierOutput

from composer_bert.hf.configuration_composer_bert import ComposerBertConfig
from composer_bert.models.bert import BertEncoder, BertForMaskedLM, BertForSequenceClassification, init_module
from composer_bert.models.causal import CausalLM, CausalLMForSequenceClassification
from composer_bert.models.layers import Rotary, ScaledSinusoidalPositions, alibi_slopes
from composer_bert.objectives import objective

try:  # transformers 5: these leave alone every tensor already loaded from the checkpoint
    from transformers import initialization as init
except ImportError:  # transformers 4 calls _init_weights only on modules whose weights the checkpoint lacks
    from torch.nn import init

try:  # transformers 5 exports GenerationMixin at the top level, 4.x too from 4.45; older ones only here
    from transformers import GenerationMixin
except ImportError:
    from transformers.generation import GenerationMixin

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


class ComposerBertPreTrainedModel(PreTrainedModel):
    """Weight init for keys a checkpoint lacks (e.g. a classifier head loaded from an MLM export)."""

    config_class = ComposerBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        """Our init (bert.init_weights) of one module's own parameters, never its children's, and its fixed buffers.

        transformers 5 builds the model on the meta device and materializes non-persistent buffers (the sinusoid
        table, rotary frequencies, ALiBi slopes: never saved) as uninitialized memory, then relies on this method
        to fill them; so they are recomputed here, on the CPU whatever device context is active.
        """
        init_module(module, self.config.init_std, init)
        with torch.device("cpu"), torch.no_grad():
            if isinstance(module, ScaledSinusoidalPositions):
                init.constant_(module.scale, module.table.shape[-1] ** -0.5)
                module.table.copy_(ScaledSinusoidalPositions(module.table.shape[-1], module.table.shape[0]).table)
            if isinstance(module, Rotary):
                module.inverse_frequency.copy_(Rotary(2 * module.inverse_frequency.numel()).inverse_frequency)
            if isinstance(module, BertEncoder) and module.alibi_slopes is not None:
                module.alibi_slopes.copy_(alibi_slopes(module.alibi_slopes.numel()))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.bert.embeddings.tokens

    def _output(self, output_type: type, loss: Tensor | None, logits: Tensor, return_dict: bool | None):
        """A `ModelOutput`, or the plain tuple `transformers` returns when return_dict is off."""
        if return_dict is False or (return_dict is None and not self.config.use_return_dict):
            return (logits,) if loss is None else (loss, logits)
        return output_type(loss=loss, logits=logits)


class _ComposerBertLM(ComposerBertPreTrainedModel):
    """What both language-model wrappers share: our model of `model_class` as `.model`, its LM head's decoder as
    the output embeddings."""

    model_class: type[nn.Module]

    def __init__(self, config: ComposerBertConfig) -> None:
        super().__init__(config)
        self.model = self.model_class(config.to_model_config())
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.head.decoder


class ComposerBertForMaskedLM(_ComposerBertLM):
    """Our `BertForMaskedLM`; logits cover every position (never sparse), vocabulary padding sliced off."""

    # Tied only when config.tie_word_embeddings; transformers 5 maps target -> source, 4 lists the targets.
    _tied_weights_keys = {"model.head.decoder.weight": "model.bert.embeddings.tokens.weight"}
    if TRANSFORMERS_MAJOR < 5:
        _tied_weights_keys = list(_tied_weights_keys)

    model_class = BertForMaskedLM

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
        return self._output(MaskedLMOutput, loss, logits, return_dict)


# The classifiers objectives.py's table names, by class name (this file runs as remote code, where the table's
# module paths do not exist).
_CLASSIFIERS = {cls.__name__: cls for cls in (BertForSequenceClassification, CausalLMForSequenceClassification)}


class ComposerBertForSequenceClassification(ComposerBertPreTrainedModel):
    """Our classifier of the config's objective (on [CLS], or a causal trunk's last real token); the loss follows
    `config.problem_type` as in `transformers`."""

    def __init__(self, config: ComposerBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        model_config = config.to_model_config()
        classifier = _CLASSIFIERS[objective(model_config.objective).classifier.rpartition(":")[2]]
        self.model = classifier(model_config, config.num_labels)
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
        return self._output(SequenceClassifierOutput, loss, logits, return_dict)

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


class ComposerBertForCausalLM(_ComposerBertLM, GenerationMixin):
    """Our `CausalLM`; `labels` follow transformers' convention (the input ids: shifted here, -100 skipped).

    `generate` works, without a cache: each step recomputes the whole sequence (a Llama-like model exports as
    transformers' own `LlamaForCausalLM`, which has one). Padded batches must be right-padded (positions count
    from each row's first token).
    """

    _tied_weights_keys = ComposerBertForMaskedLM._tied_weights_keys

    model_class = CausalLM

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutput | tuple[Tensor, ...]:
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # full rows: the unmasked (flash-capable) path
        logits = self.model(input_ids, attention_mask=attention_mask)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return self._output(CausalLMOutput, loss, logits, return_dict)

    def prepare_inputs_for_generation(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> dict:
        """The whole sequence every step: no cache is kept between steps."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}
