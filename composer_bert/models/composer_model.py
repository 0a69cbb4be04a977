"""Composer wrappers: the loss, metrics and FLOP count the Trainer and SpeedMonitor ask a model for.

`self.model` holds the plain torch module, so Composer checkpoint keys read `model.bert...`, `model.head...`.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity, MaskedAccuracy
from composer.models import ComposerModel
from torch import Tensor
from torchmetrics import MeanSquaredError, Metric
from torchmetrics.classification import MulticlassAccuracy

from composer_bert.models.bert import IGNORE_INDEX, BertForMaskedLM, BertForSequenceClassification
from composer_bert.models.config import ModelConfig
from composer_bert.models.flops import classifier_flops_per_batch, mlm_flops_per_batch

Batch = dict[str, Tensor]


class ComposerMLM(ComposerModel):
    """Masked language modelling; batches hold input_ids, attention_mask and labels (-100 = not masked)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = BertForMaskedLM(cfg)
        self.train_metrics, self.eval_metrics = _mlm_metrics(), _mlm_metrics(perplexity=True)

    def forward(self, batch: Batch) -> Tensor:
        """Logits [B, L, V], or [num_masked, V] with sparse prediction."""
        return self.model(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"), batch["labels"])

    def loss(self, outputs: Tensor, batch: Batch, *args: Any, **kwargs: Any) -> Tensor:
        return F.cross_entropy(outputs.flatten(0, -2), self._targets(batch).flatten(), ignore_index=IGNORE_INDEX)

    def _targets(self, batch: Batch) -> Tensor:
        """Labels lined up with the logits: only the masked ones when the head ran sparse."""
        labels = batch["labels"]
        return labels[labels != IGNORE_INDEX] if self.config.sparse_prediction else labels

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.eval_metrics

    def update_metric(self, batch: Batch, outputs: Tensor, metric: Metric) -> None:
        metric.update(outputs, self._targets(batch))

    def flops_per_batch(self, batch: Batch) -> int:
        return mlm_flops_per_batch(self.config, batch)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def _mlm_metrics(perplexity: bool = False) -> dict[str, Metric]:
    metrics = {
        "MaskedAccuracy": MaskedAccuracy(ignore_index=IGNORE_INDEX),
        "LanguageCrossEntropy": LanguageCrossEntropy(ignore_index=IGNORE_INDEX),
    }
    if perplexity:
        metrics["LanguagePerplexity"] = LanguagePerplexity(ignore_index=IGNORE_INDEX)
    return metrics


class ComposerClassifier(ComposerModel):
    """Sequence classification (num_labels >= 2, cross entropy) or regression (num_labels == 1, MSE) on [CLS].

    Batches hold input_ids, attention_mask, optional token_type_ids and labels [B] (long, or float for regression).
    `eval_forward` gives logits [B, num_labels], or predictions [B] for regression.
    """

    def __init__(self, cfg: ModelConfig, num_labels: int):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"num_labels must be 1 (regression) or at least 2 (classes), got {num_labels}")
        self.config = cfg
        self.num_labels = num_labels
        self.is_regression = num_labels == 1
        self.model = BertForSequenceClassification(cfg, num_labels)
        self.train_metrics, self.eval_metrics = self._metrics(), self._metrics()

    def _metrics(self) -> dict[str, Metric]:
        if self.is_regression:
            return {"MeanSquaredError": MeanSquaredError()}
        return {"MulticlassAccuracy": MulticlassAccuracy(num_classes=self.num_labels, average="micro")}

    def forward(self, batch: Batch) -> Tensor:
        """Logits [B, num_labels]."""
        return self.model(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))

    def loss(self, outputs: Tensor, batch: Batch, *args: Any, **kwargs: Any) -> Tensor:
        if self.is_regression:
            return F.mse_loss(outputs.squeeze(-1), batch["labels"].to(outputs.dtype))
        return F.cross_entropy(outputs, batch["labels"])

    def eval_forward(self, batch: Batch, outputs: Tensor | None = None) -> Tensor:
        logits = outputs if outputs is not None else self.forward(batch)
        return logits.squeeze(-1) if self.is_regression else logits

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.eval_metrics

    def update_metric(self, batch: Batch, outputs: Tensor, metric: Metric) -> None:
        metric.update(outputs, batch["labels"])

    def load_encoder_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load the encoder from an MLM state dict (keys `bert.*`; a `model.` prefix is stripped); the head is skipped.

        Strict about the encoder: a missing or unexpected `bert.*` key raises.
        """
        encoder = {}
        for key, tensor in state_dict.items():
            key = key.removeprefix("model.")
            if key.startswith("bert."):
                encoder[key.removeprefix("bert.")] = tensor
        self.model.bert.load_state_dict(encoder, strict=True)

    def flops_per_batch(self, batch: Batch) -> int:
        return classifier_flops_per_batch(self.config, self.num_labels, batch)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def build_composer_model(cfg: ModelConfig, num_labels: int | None = None) -> ComposerMLM | ComposerClassifier:
    """The MLM model for pretraining, or a classifier (regressor when num_labels == 1) for finetuning."""
    return ComposerMLM(cfg) if num_labels is None else ComposerClassifier(cfg, num_labels)
