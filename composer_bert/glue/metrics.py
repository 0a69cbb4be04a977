"""GLUE dev-set metrics from plain predictions, in numpy, reported x100 like the BERT and Cramming papers.

Computed once over the whole dev set after training (not averaged over batches), so MCC, F1 and the
correlations are exact. scikit-learn and scipy are only test dependencies; the tests check these
functions against them. Undefined cases follow scikit-learn's convention of scoring 0: MCC or F1 with
an empty denominator, and a correlation where either side is constant (a constant predictor carries
no information).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from composer_bert.glue.tasks import GlueTask


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def binary_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (label 1: 'equivalent' in MRPC, 'duplicate' in QQP), as GLUE scores it."""
    true_pos = float(np.sum((predictions == 1) & (labels == 1)))
    false_pos = float(np.sum((predictions == 1) & (labels != 1)))
    false_neg = float(np.sum((predictions != 1) & (labels == 1)))
    denominator = 2 * true_pos + false_pos + false_neg
    return 2 * true_pos / denominator if denominator else 0.0


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K), which reduces to the binary MCC for CoLA."""
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    n = len(labels)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (encoded[:n], encoded[n:]), 1)
    true_per_class, predicted_per_class = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), confusion.sum()
    numerator = correct * total - true_per_class @ predicted_per_class
    denominator = np.sqrt(
        (total**2 - predicted_per_class @ predicted_per_class) * (total**2 - true_per_class @ true_per_class)
    )
    return float(numerator / denominator) if denominator else 0.0


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    x = predictions.astype(np.float64) - predictions.mean()
    y = labels.astype(np.float64) - labels.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float((x @ y) / denominator) if denominator else 0.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank (what Spearman's rho needs)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, tie_group, group_sizes = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(tie_group, weights=ranks) / group_sizes)[tie_group]


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    return pearson(average_ranks(predictions), average_ranks(labels))


METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": binary_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}
METRIC_LABELS = {"accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "Pearson", "spearman": "Spearman"}


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification, the single predicted score for regression."""
    if task.is_regression:
        return logits.reshape(len(logits), -1)[:, 0].astype(np.float64)
    return logits.argmax(axis=-1)


def compute_task_metrics(task: GlueTask, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric the task reports, x100, keyed by metric name in the task's order."""
    if len(predictions) != len(labels) or len(labels) == 0:
        raise ValueError(f"{task.name}: {len(predictions)} predictions for {len(labels)} labels")
    return {name: 100.0 * METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}


def score_eval_set(task: GlueTask, split: Any, logits: np.ndarray, examples: Any) -> dict[str, float]:
    """GLUE's scorer (`benchmark.py`): the task's metrics of the argmax (or regressed score) against the labels."""
    return compute_task_metrics(task, predictions_from_logits(task, logits), np.asarray(examples.labels))
