"""Composer wrappers: the loss, metrics and FLOP count the Trainer and SpeedMonitor ask a model for.

`self.model` holds the plain torch module, so Composer checkpoint keys read `model.bert...`, `model.head...`.
Like the model, the loss, the metric updates and `flops_per_batch` never read a tensor value on the host:
Composer updates the training metrics every batch, and a read there would synchronise every GPU step.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.metrics.nlp import MaskedAccuracy as ComposerMaskedAccuracy
from composer.models import ComposerModel
from torch import Tensor
from torchmetrics import MeanSquaredError, Metric
from torchmetrics.classification import MulticlassAccuracy

from composer_bert.batch import IGNORE_INDEX, MASKED_POSITIONS, next_token_labels
from composer_bert.models.bert import (
    BertForMaskedLM,
    BertForSequenceClassification,
    masked_positions,
    masked_targets,
)
from composer_bert.models.causal import CausalLM, next_token_loss
from composer_bert.models.config import ModelConfig
from composer_bert.models.flops import classifier_flops_per_batch
from composer_bert.objectives import objective

Batch = dict[str, Tensor]


class LanguageModelWrapper(ComposerModel):
    """What both objectives' wrappers share: the config, and the metrics and FLOP count their `objectives.py`
    entry names, resolved once here (Composer's SpeedMonitor asks for the FLOPs every batch)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.train_metrics, self.eval_metrics = objective_metrics(cfg)
        self._flops_per_batch = objective(cfg.objective).load("flops_per_batch")

    def get_metrics(self, is_train: bool = False) -> dict[str, Metric]:
        return self.train_metrics if is_train else self.eval_metrics

    def flops_per_batch(self, batch: Batch) -> int:
        return self._flops_per_batch(self.config, batch)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


class ComposerMLM(LanguageModelWrapper):
    """Masked language modelling on batches of input_ids, labels (-100 = not masked) and masked_positions.

    `masked_positions` [B, K] (the MLM collator's; -1 = empty slot) are where a sparse head predicts. A batch
    without them (one built by hand) predicts at every masked position, in slots as wide as the row: right,
    but with a head as large as a dense one. `attention_mask` and `token_type_ids` are optional.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.model = BertForMaskedLM(cfg)

    def forward(self, batch: Batch) -> Tensor:
        """Logits [B, L, V], or [B, K, V] at the masked positions with sparse prediction."""
        input_ids, positions = batch["input_ids"], self._positions(batch)
        return self.model(input_ids, batch.get("attention_mask"), batch.get("token_type_ids"), positions)

    def loss(self, outputs: Tensor, batch: Batch, *args: Any, **kwargs: Any) -> Tensor:
        return F.cross_entropy(outputs.flatten(0, -2), self._targets(batch).flatten(), ignore_index=IGNORE_INDEX)

    def _positions(self, batch: Batch) -> Tensor | None:
        if not self.config.sparse_prediction:
            return None
        positions = batch.get(MASKED_POSITIONS)
        if positions is None:
            labels = batch["labels"]
            positions = masked_positions(labels, labels.shape[1])
        return positions

    def _targets(self, batch: Batch) -> Tensor:
        """Labels lined up with the logits: those at the predicted slots when the head ran sparse."""
        positions = self._positions(batch)
        return batch["labels"] if positions is None else masked_targets(batch["labels"], positions)

    def update_metric(self, batch: Batch, outputs: Tensor, metric: Metric) -> None:
        metric.update(outputs, self._targets(batch))


class ComposerCausalLM(LanguageModelWrapper):
    """Next-token language modelling on batches of input_ids and labels shifted by the loader (batch.py's `next_token_labels`).

    A batch without labels (one built by hand) gets them from its input_ids. Train metric: cross entropy;
    eval: cross entropy and perplexity, over every predicted position.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.model = CausalLM(cfg)

    def forward(self, batch: Batch) -> Tensor:
        """Logits [B, L, V]."""
        return self.model(batch["input_ids"], attention_mask=batch.get("attention_mask"))

    def loss(self, outputs: Tensor, batch: Batch, *args: Any, **kwargs: Any) -> Tensor:
        return next_token_loss(outputs, self._labels(batch))

    def _labels(self, batch: Batch) -> Tensor:
        labels = batch.get("labels")
        return next_token_labels(batch["input_ids"]) if labels is None else labels

    def update_metric(self, batch: Batch, outputs: Tensor, metric: Metric) -> None:
        metric.update(outputs, self._labels(batch))


class MaskedAccuracy(ComposerMaskedAccuracy):
    """Composer's MaskedAccuracy, counted without boolean indexing (which reads the mask's size on the host)."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        counted = target != self.ignore_index
        self.correct += ((preds.argmax(dim=-1) == target) & counted).sum()
        self.total += counted.sum()


METRICS = {  # the metric names objectives.py's table lists, each skipping IGNORE_INDEX positions
    "MaskedAccuracy": MaskedAccuracy,
    "LanguageCrossEntropy": LanguageCrossEntropy,
    "LanguagePerplexity": LanguagePerplexity,
}


def objective_metrics(cfg: ModelConfig) -> tuple[dict[str, Metric], dict[str, Metric]]:
    """The train and eval metrics `cfg.objective`'s table entry names."""
    entry = objective(cfg.objective)
    build = lambda names: {name: METRICS[name](ignore_index=IGNORE_INDEX) for name in names}  # noqa: E731
    return build(entry.train_metrics), build(entry.eval_metrics)


class ComposerClassifier(ComposerModel):
    """Sequence classification (num_labels >= 2, cross entropy) or regression (num_labels == 1, MSE) by the
    classifier `cfg.objective`'s table entry names: on [CLS] for an encoder, on the last real token for a decoder.

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
        self.model = objective(cfg.objective).load("classifier")(cfg, num_labels)
        self.train_metrics, self.eval_metrics = self._metrics(), self._metrics()

    def _metrics(self) -> dict[str, Metric]:
        if self.is_regression:
            return {"MeanSquaredError": MeanSquaredError()}
        # validate_args=False: the argument checks read label values on the host (torch.unique) every batch
        return {"MulticlassAccuracy": MulticlassAccuracy(num_classes=self.num_labels, average="micro", validate_args=False)}

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
        """Load the trunk from a pretrained state dict of either objective (keys `bert.*`; a `model.` prefix is
        stripped); the LM head is skipped.

        Strict about the encoder: a missing or unexpected `bert.*` key raises.
        """
        encoder = {}
        for key, tensor in state_dict.items():
            key = key.removeprefix("model.")
            if key.startswith("bert."):
                encoder[key.removeprefix("bert.")] = tensor
        self.model.bert.load_state_dict(encoder, strict=True)

    def flops_per_batch(self, batch: Batch) -> int:
        pooler = isinstance(self.model, BertForSequenceClassification)
        return classifier_flops_per_batch(self.config, self.num_labels, batch, pooler)

    def num_parameters(self) -> int:
        return self.model.num_parameters()


def build_composer_model(
    cfg: ModelConfig, num_labels: int | None = None
) -> ComposerMLM | ComposerCausalLM | ComposerClassifier:
    """The pretraining model of `cfg.objective`, or a classifier (regressor when num_labels == 1) for finetuning."""
    if num_labels is not None:
        return ComposerClassifier(cfg, num_labels)
    return objective(cfg.objective).load("composer_model")(cfg)
